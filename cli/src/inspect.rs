//! `mint inspect`: which tensors of an audited ONNX model can be tapped, and which to pick.
//!
//! Suggests the paper's choice: the last convolution of each stage, a stage being a run of
//! layers at one spatial resolution (1×1 projection convolutions on skip paths are passed
//! over), and the model's output as the outcome.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;
use tract_onnx::pb;
use tract_onnx::prelude::*;

#[derive(clap::Args)]
/// List the tensors of an ONNX model that can be tapped, and suggest taps.
pub struct Args {
    /// The audited model.
    model: PathBuf,
    /// One input sample's shape without the batch axis, e.g. 1,28,28 (default: from the model).
    #[arg(long, value_delimiter = ',')]
    input_shape: Option<Vec<usize>>,
    /// Write a descriptor (model.json) with the suggested taps, for `mint extract`.
    #[arg(long)]
    write_descriptor: Option<PathBuf>,
    /// Model id for the descriptor.
    #[arg(long, default_value = "audited-model")]
    id: String,
}

struct Row {
    node: String,
    op: String,
    tensor: String,
    shape: Vec<usize>,
    kernel: Option<Vec<i64>>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let onnx = tract_onnx::onnx();
    let proto = onnx.proto_model_for_path(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let graph = proto.graph.as_ref().context("the model has no graph")?;
    let input_shape = match args.input_shape {
        Some(s) => s,
        None => declared_input_shape(graph).context("the input's shape is not fully declared: pass --input-shape")?,
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
    for node in &graph.node {
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
        });
    }

    println!("{:<48} {:<20} {:<16} tensor", "node", "op", "shape");
    for r in &rows {
        println!("{:<48} {:<20} {:<16} {}", r.node, r.op, format!("{:?}", r.shape), r.tensor);
    }

    // Stages: runs of spatial resolution; in each, the last convolution wider than 1×1.
    let mut stages: Vec<(&[usize], &Row)> = Vec::new();
    for r in rows.iter().filter(|r| r.op == "Conv" && r.shape.len() == 3) {
        if r.kernel.as_ref().is_some_and(|k| k.iter().all(|&d| d == 1)) {
            continue;
        }
        let hw = &r.shape[1..];
        match stages.iter_mut().find(|(s, _)| *s == hw) {
            Some(stage) => stage.1 = r,
            None => stages.push((hw, r)),
        }
    }
    let output = graph.output.first().map(|o| o.name.clone());
    let outcome = output.as_deref().and_then(|o| rows.iter().find(|r| r.tensor == o && r.shape.len() == 1));
    println!(
        "\nsuggested taps (last convolution of each stage{}):",
        if outcome.is_some() { ", and the outcome" } else { "" }
    );
    let mut taps = Vec::new();
    for (i, (_, r)) in stages.iter().enumerate() {
        println!("  stage{}  {:<44} {:?}", i + 1, r.tensor, r.shape);
        taps.push(json!({"name": format!("stage{}", i + 1), "channels": r.shape[0], "kind": "activation_map",
                         "tensor": r.tensor, "spatial": [r.shape[1], r.shape[2]]}));
    }
    if let Some(r) = outcome {
        println!("  outcome {:<44} {:?}", r.tensor, r.shape);
        taps.push(json!({"name": "outcome", "channels": r.shape[0], "kind": "outcome", "tensor": r.tensor}));
    }
    if let Some(path) = &args.write_descriptor {
        let onnx_path = crate::train::relative_to(
            &args.model,
            path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")),
        );
        let descriptor = json!({
            "model": {"id": args.id, "version": "1", "onnx": onnx_path, "input_shape": input_shape},
            "taps": taps,
        });
        std::fs::write(path, serde_json::to_string_pretty(&descriptor)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn declared_input_shape(graph: &pb::GraphProto) -> Option<Vec<usize>> {
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let input = graph.input.iter().find(|i| !initializers.contains(&i.name.as_str()))?;
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
