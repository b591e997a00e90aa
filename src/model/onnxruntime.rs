//! The audited model on onnxruntime (builds with the `onnxruntime` feature), through the `ort`
//! crate with the shared library loaded at run time from a path the user gives: nothing is
//! downloaded or linked at build time, and a host without the library loses nothing unless
//! its configuration asks for this runtime.
//!
//! onnxruntime returns graph outputs only, so the taps are declared as extra graph outputs in
//! the ONNX protobuf before the session is built, after the model's own outputs (the order
//! tract's plan uses). Each runner owns a session on one intra-op thread: the toolkit's
//! threads are runners, as with tract.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::{DynValue, TensorRef};
use prost::Message;
use tract_onnx::pb;

/// The model with its taps as graph outputs, and what a probe run found.
pub(super) struct OrtModel {
    bytes: Arc<[u8]>,
    /// Graph output names, in output-slot order.
    outputs: Vec<String>,
    /// Each output's shape for one sample (without the batch axis).
    shapes: Vec<Vec<usize>>,
}

impl OrtModel {
    /// Declares the taps as outputs, builds a session and runs one zero sample through it, so
    /// that a model onnxruntime cannot run is refused here, with the output shapes learnt.
    pub(super) fn compile(
        bytes: &[u8],
        taps: &[&str],
        sample_shape: &[usize],
        library: &Path,
    ) -> Result<(OrtModel, Vec<usize>), String> {
        load_library(library)?;
        let TappedGraph { bytes, outputs, tap_slots } = with_tap_outputs(bytes, taps)?;
        let mut model = OrtModel { bytes: bytes.into(), outputs, shapes: Vec::new() };
        let mut probe = model.runner()?;
        let zeros = vec![0f32; sample_shape.iter().product()];
        probe.run(&zeros, 1, sample_shape)?;
        for (slot, name) in model.outputs.iter().enumerate() {
            let (shape, _) =
                probe.output(slot).map_err(|e| format!("output '{name}' cannot be read as f32 values: {e}"))?;
            model.shapes.push(shape[1..].to_vec());
        }
        Ok((model, tap_slots))
    }

    pub(super) fn output_shape(&self, slot: usize) -> &[usize] {
        &self.shapes[slot]
    }

    pub(super) fn runner(&self) -> Result<OrtRunner, String> {
        let session = Session::builder()
            .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            .and_then(|mut b| b.commit_from_memory(&self.bytes))
            .map_err(|e| format!("onnxruntime refused the model: {e}"))?;
        Ok(OrtRunner { session, names: self.outputs.clone(), values: Vec::new() })
    }
}

/// One thread's session, and the outputs of its last run.
pub(super) struct OrtRunner {
    session: Session,
    names: Vec<String>,
    values: Vec<DynValue>,
}

impl OrtRunner {
    pub(super) fn run(&mut self, input: &[f32], n: usize, sample_shape: &[usize]) -> Result<(), String> {
        let mut shape = vec![n];
        shape.extend_from_slice(sample_shape);
        let tensor = TensorRef::from_array_view((shape, input)).map_err(|e| e.to_string())?;
        let mut outputs = self.session.run(ort::inputs![tensor]).map_err(|e| e.to_string())?;
        self.values.clear();
        for name in &self.names {
            self.values.push(outputs.remove(name).ok_or_else(|| format!("onnxruntime returned no '{name}'"))?);
        }
        Ok(())
    }

    /// Output `slot` of the last run: its shape and values.
    pub(super) fn output(&self, slot: usize) -> Result<(Vec<usize>, &[f32]), String> {
        let value = self.values.get(slot).ok_or("the model has not run")?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        let shape: Result<Vec<usize>, String> =
            shape.iter().map(|&d| usize::try_from(d).map_err(|_| format!("dimension {d}"))).collect();
        Ok((shape?, data))
    }
}

/// Loads onnxruntime from `library` once per process; asking for another library later is
/// refused rather than silently served by the first.
fn load_library(library: &Path) -> Result<(), String> {
    static LOADED: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    let wanted = library.canonicalize().map_err(|e| format!("onnxruntime library {}: {e}", library.display()))?;
    match &*loaded {
        Some(path) if *path == wanted => Ok(()),
        Some(path) => Err(format!(
            "onnxruntime is already loaded from {} in this process; {} cannot be loaded beside it",
            path.display(),
            wanted.display()
        )),
        None => {
            let builder = ort::init_from(&wanted).map_err(|e| format!("loading onnxruntime: {e}"))?;
            builder.with_name("mint-audit").commit();
            *loaded = Some(wanted);
            Ok(())
        }
    }
}

/// An ONNX model re-encoded with its taps among the graph outputs.
struct TappedGraph {
    bytes: Vec<u8>,
    /// Graph output names, in slot order.
    outputs: Vec<String>,
    /// Each tap's slot.
    tap_slots: Vec<usize>,
}

/// The model with `taps` declared as graph outputs after its own. A tap names a tensor, or a
/// node (its first output).
fn with_tap_outputs(bytes: &[u8], taps: &[&str]) -> Result<TappedGraph, String> {
    let mut model = pb::ModelProto::decode(bytes).map_err(|e| format!("not an ONNX model: {e}"))?;
    let graph = model.graph.as_mut().ok_or("the ONNX model has no graph")?;
    let initializers: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut inputs = graph.input.iter_mut().filter(|i| !initializers.contains(i.name.as_str()));
    let (Some(input), None) = (inputs.next(), inputs.next()) else {
        let count = graph.input.iter().filter(|i| !initializers.contains(i.name.as_str())).count();
        return Err(format!("the audited model must have one input, it has {count}"));
    };
    // Any batch size, as with tract (an export may have fixed it at 1).
    use pb::tensor_shape_proto::dimension::Value as Dim;
    if let Some(pb::type_proto::Value::TensorType(t)) = input.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        if let Some(first) = t.shape.as_mut().and_then(|s| s.dim.first_mut()) {
            first.value = Some(Dim::DimParam("N".into()));
        }
    }
    let mut outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let mut tap_slots = Vec::with_capacity(taps.len());
    for &tap in taps {
        let produced = graph.node.iter().any(|n| n.output.iter().any(|o| o == tap));
        let name = if produced || graph.input.iter().any(|i| i.name == tap) {
            tap.to_owned()
        } else {
            match graph.node.iter().find(|n| n.name == tap).and_then(|n| n.output.first()) {
                Some(first) => first.clone(),
                None => return Err(format!("no tensor or node is named '{tap}' (see `mint inspect`)")),
            }
        };
        let slot = outputs.iter().position(|o| *o == name).unwrap_or_else(|| {
            graph.output.push(pb::ValueInfoProto { name: name.clone(), ..Default::default() });
            outputs.push(name);
            outputs.len() - 1
        });
        tap_slots.push(slot);
    }
    Ok(TappedGraph { bytes: model.encode_to_vec(), outputs, tap_slots })
}
