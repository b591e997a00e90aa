//! `mint inspect`: which tensors of an audited ONNX model can be tapped, and which to pick
//! ([`mint_toolkit::inspect`] says how taps are suggested).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use mint_toolkit::inspect;

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
    /// Print one JSON document (tensors, suggested taps with their reasons) instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let found = inspect::inspect(&args.model, args.input_shape.clone())?;
    if let Some(why) = found.no_outcome {
        eprintln!("mint inspect: {why}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found.to_json(&args.model))?);
    } else {
        println!("{:<48} {:<20} {:<16} tensor", "node", "op", "shape");
        for r in &found.tensors {
            println!("{:<48} {:<20} {:<16} {}", r.node, r.op, format!("{:?}", r.shape), r.tensor);
        }
        println!("\nsuggested taps:");
        for t in &found.suggested {
            println!("  {:<8} {:<44} {:<14} {}", t.name, t.row.tensor, format!("{:?}", t.row.shape), t.why);
        }
        for (r, why) in &found.passed_over {
            println!("  (not a tap) {} {:?}: {why}", r.tensor, r.shape);
        }
    }
    if let Some(path) = &args.write_descriptor {
        found.write_descriptor(&args.model, &args.id, path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
