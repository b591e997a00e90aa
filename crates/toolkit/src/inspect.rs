//! Which tensors of an audited ONNX model can be tapped, and which to pick (`mint inspect`).
//!
//! Suggests the paper's choice, each with a one-line reason:
//! - per stage, the last convolution wider than 1×1 (1×1 projections on skip paths are passed
//!   over), a stage being a run of layers at one spatial resolution; the stem (the strided
//!   convolution that reads the input) is no stage when it is alone at its resolution, as in a
//!   ResNet, whose stem downsamples before the first stage;
//! - the outcome by what it is, whatever the order of the graph's outputs: the output fed by
//!   the last Gemm/MatMul (through a Softmax or an Add), else the one named like logits or
//!   output, else the only `[N, K]` output.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// A tensor that could be tapped: a node's output of rank 4 (a map) or 2 (a vector).
#[derive(Debug, Clone)]
pub struct Row {
    pub node: String,
    pub op: String,
    pub tensor: String,
    /// Without the batch axis.
    pub shape: Vec<usize>,
    kernel: Option<Vec<i64>>,
    /// Its position in the graph's (topologically sorted) node list.
    order: usize,
}

/// A suggested tap and why.
struct Suggestion<'a> {
    name: String,
    row: &'a Row,
    kind: &'static str,
    why: String,
}

/// A suggested tap, and why.
#[derive(Debug, Clone)]
pub struct Tap {
    pub name: String,
    pub row: Row,
    /// `activation_map` or `outcome`.
    pub kind: &'static str,
    pub why: String,
}

impl Tap {
    /// The tap as a configuration or descriptor writes it.
    pub fn to_json(&self) -> Value {
        let r = &self.row;
        if self.kind == "activation_map" {
            json!({"name": self.name, "channels": r.shape[0], "kind": self.kind, "tensor": r.tensor,
                   "spatial": [r.shape[1], r.shape[2]]})
        } else {
            json!({"name": self.name, "channels": r.shape[0], "kind": self.kind, "tensor": r.tensor})
        }
    }
}

/// What inspecting a model found.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// One sample's input shape (without the batch axis).
    pub input_shape: Vec<usize>,
    /// The graph's output names.
    pub outputs: Vec<String>,
    /// Every tensor that could be tapped, in graph order.
    pub tensors: Vec<Row>,
    /// The taps suggested: stages, then the outcome when one was found.
    pub suggested: Vec<Tap>,
    /// Convolutions passed over, and why.
    pub passed_over: Vec<(Row, String)>,
    /// Why no outcome tap is suggested, when none is.
    pub no_outcome: Option<&'static str>,
}

impl Inspection {
    /// One JSON document: tensors, suggested taps with their reasons, what was passed over.
    pub fn to_json(&self, model: &Path) -> Value {
        let tensors: Vec<_> = self
            .tensors
            .iter()
            .map(|r| json!({"node": r.node, "op": r.op, "tensor": r.tensor, "shape": r.shape}))
            .collect();
        let suggested: Vec<_> = self.suggested.iter().map(|t| json!({"tap": t.to_json(), "why": t.why})).collect();
        let passed: Vec<_> = self.passed_over.iter().map(|(r, why)| json!({"tensor": r.tensor, "why": why})).collect();
        json!({"model": model, "input_shape": self.input_shape, "outputs": self.outputs,
               "tensors": tensors, "suggested_taps": suggested, "passed_over": passed})
    }

    /// A model descriptor (`model.json`) with the suggested taps, for `mint extract`; the
    /// ONNX path is written relative to the descriptor's folder.
    pub fn write_descriptor(&self, model: &Path, id: &str, path: &Path) -> Result<()> {
        let onnx_path = crate::paths::relative_to(
            model,
            path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")),
        );
        let descriptor = json!({
            "model": {"id": id, "version": "1", "onnx": onnx_path, "input_shape": self.input_shape},
            "taps": self.suggested.iter().map(Tap::to_json).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&descriptor)?)
            .with_context(|| format!("writing {} (--write-descriptor)", path.display()))
    }
}

/// Lists the tensors of an ONNX model that can be tapped and suggests taps; `input_shape`
/// (without the batch axis) is read from the model when not given.
pub fn inspect(path: &Path, input_shape: Option<Vec<usize>>) -> Result<Inspection> {
    let onnx = tract_onnx::onnx();
    let proto = onnx.proto_model_for_path(path).with_context(|| format!("reading {}", path.display()))?;
    let graph = proto.graph.as_ref().context("the model has no graph")?;
    let input_shape = match input_shape {
        Some(s) => s,
        None => declared_input_shape(graph).with_context(|| {
            format!("{}: the input's shape is not fully declared: pass --input-shape", path.display())
        })?,
    };

    // Shapes for batch 1, from tract's own analysis of the model.
    let mut model = onnx.model_for_proto_model(&proto)?;
    let mut full = vec![1usize];
    full.extend_from_slice(&input_shape);
    model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), full))?;
    let typed = model.into_typed()?;
    let shape_of = |tensor: &str| -> Option<Vec<usize>> {
        let outlet = typed.find_outlet_label(tensor)?;
        let fact = typed.outlet_fact(outlet).ok()?;
        fact.shape.as_concrete().map(|s| s.to_vec())
    };

    let weights: HashMap<&str, &pb::TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut rows = Vec::new();
    for (order, node) in graph.node.iter().enumerate() {
        let Some(tensor) = node.output.first() else { continue };
        let Some(shape) = shape_of(tensor) else { continue };
        if !(shape.len() == 4 || shape.len() == 2) {
            continue;
        }
        let kernel = (node.op_type == "Conv").then(|| {
            node.attribute
                .iter()
                .find(|a| a.name == "kernel_shape")
                .map(|a| a.ints.clone())
                .or_else(|| node.input.get(1).and_then(|w| weights.get(w.as_str())).map(|w| w.dims[2..].to_vec()))
                .unwrap_or_default()
        });
        rows.push(Row {
            node: node.name.clone(),
            op: node.op_type.clone(),
            tensor: tensor.clone(),
            shape: shape[1..].to_vec(),
            kernel,
            order,
        });
    }

    let input_name = model_input(graph);
    let (stage_taps, passed_over) = stages(&rows, graph, input_name);
    let found_outcome = outcome(&rows, graph);
    let no_outcome = found_outcome.is_none().then_some(
        "no graph output is an [N, K] vector fed by a Gemm/MatMul or named like logits/output: no outcome tap suggested",
    );
    let owned = |s: Suggestion<'_>| Tap { name: s.name, row: s.row.clone(), kind: s.kind, why: s.why };
    let suggested = stage_taps.into_iter().chain(found_outcome).map(owned).collect();
    let passed_over = passed_over.into_iter().map(|(r, why)| (r.clone(), why)).collect();
    Ok(Inspection {
        input_shape,
        outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
        tensors: rows,
        suggested,
        passed_over,
        no_outcome,
    })
}

/// The stage taps, and the convolutions passed over for being a lone stem.
fn stages<'a>(
    rows: &'a [Row],
    graph: &pb::GraphProto,
    input: Option<&str>,
) -> (Vec<Suggestion<'a>>, Vec<(&'a Row, String)>) {
    let reads_input = |r: &Row| {
        let node = &graph.node[r.order];
        input.is_some_and(|i| node.input.first().map(String::as_str) == Some(i))
    };
    // Runs of spatial resolution, in graph order: (H×W, convolutions wider than 1×1).
    let mut groups: Vec<(&[usize], Vec<&Row>)> = Vec::new();
    for r in rows.iter().filter(|r| r.op == "Conv" && r.shape.len() == 3) {
        if r.kernel.as_ref().is_some_and(|k| k.iter().all(|&d| d == 1)) {
            continue;
        }
        let hw = &r.shape[1..];
        match groups.iter_mut().find(|(s, _)| *s == hw) {
            Some(group) => group.1.push(r),
            None => groups.push((hw, vec![r])),
        }
    }
    let mut taps = Vec::new();
    let mut passed_over = Vec::new();
    for (hw, convs) in &groups {
        if let [only] = convs.as_slice() {
            if reads_input(only) && strided(&graph.node[only.order]) {
                passed_over.push((
                    *only,
                    "the stem: it reads the input with a stride and is alone at its resolution".to_string(),
                ));
                continue;
            }
        }
        let last = convs[convs.len() - 1];
        let k = last.kernel.as_ref().map(|k| k.iter().map(i64::to_string).collect::<Vec<_>>().join("×"));
        taps.push(Suggestion {
            name: format!("stage{}", taps.len() + 1),
            row: last,
            kind: "activation_map",
            why: format!(
                "the last {} convolution at {}×{} ({} there)",
                k.unwrap_or_default(),
                hw[0],
                hw[1],
                convs.len()
            ),
        });
    }
    (taps, passed_over)
}

/// Whether a convolution downsamples (a stride above 1).
fn strided(node: &pb::NodeProto) -> bool {
    node.attribute.iter().any(|a| a.name == "strides" && a.ints.iter().any(|&s| s > 1))
}

/// The graph output that is the model's outcome, found by what it is.
fn outcome<'a>(rows: &'a [Row], graph: &pb::GraphProto) -> Option<Suggestion<'a>> {
    let producer: HashMap<&str, usize> =
        graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    // The Gemm/MatMul a tensor comes from, through the ops that follow a classifier's layer.
    let linear_source = |tensor: &str| -> Option<usize> {
        let mut at = *producer.get(tensor)?;
        for _ in 0..4 {
            let node = &graph.node[at];
            match node.op_type.as_str() {
                "Gemm" | "MatMul" => return Some(at),
                "Add" | "Softmax" | "LogSoftmax" | "Sigmoid" | "Identity" => {
                    at = node.input.iter().filter_map(|i| producer.get(i.as_str())).copied().max()?;
                }
                _ => return None,
            }
        }
        None
    };
    let vectors: Vec<&Row> = graph
        .output
        .iter()
        .filter_map(|o| rows.iter().find(|r| r.tensor == o.name && r.shape.len() == 1 && r.shape[0] >= 2))
        .collect();
    let by_linear = vectors.iter().filter_map(|r| Some((linear_source(&r.tensor)?, *r))).max_by_key(|(at, _)| *at);
    let (row, why) = if let Some((at, row)) = by_linear {
        let node = &graph.node[at];
        (row, format!("the graph output fed by the last {} ({}), {} classes", node.op_type, node.name, row.shape[0]))
    } else if let Some(row) = vectors.iter().find(|r| {
        let name = r.tensor.to_ascii_lowercase();
        ["logit", "output", "prob", "score"].iter().any(|w| name.contains(w))
    }) {
        (*row, format!("the graph output named like an outcome, {} classes", row.shape[0]))
    } else if let [row] = vectors.as_slice() {
        (*row, format!("the only [N, K] graph output, {} classes", row.shape[0]))
    } else {
        return None;
    };
    Some(Suggestion { name: "outcome".into(), row, kind: "outcome", why })
}

/// The graph's input (the first one that is not a weight).
fn model_input(graph: &pb::GraphProto) -> Option<&str> {
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    graph.input.iter().map(|i| i.name.as_str()).find(|i| !initializers.contains(i))
}

fn declared_input_shape(graph: &pb::GraphProto) -> Option<Vec<usize>> {
    let name = model_input(graph)?;
    let input = graph.input.iter().find(|i| i.name == name)?;
    let ty = input.r#type.as_ref()?;
    let Some(pb::type_proto::Value::TensorType(t)) = &ty.value else { return None };
    let dims = &t.shape.as_ref()?.dim;
    dims.iter()
        .skip(1)
        .map(|d| match &d.value {
            Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if *v > 0 => Some(*v as usize),
            _ => None,
        })
        .collect()
}
