//! `mint verify-bundle`: checks an evidence bundle's ([`Bundle`]) signature against the
//! console's key, recomputes its evidence from the same images and model, and compares the
//! evidence's JSON byte for byte.
//!
//! Scores come from floating-point kernels chosen for the CPU, so a bundle made on a machine
//! with other instruction sets may differ in the last digits: the command then says what
//! differs and whether the conclusions do.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, ensure, Context, Result};
use mint_toolkit::formats::bundle::{digest, Bundle};
use serde_json::Value;
use sha2::{Digest, Sha256};

use mint_toolkit::console::analysis;
use mint_toolkit::console::disclosure::Disclosure;
use mint_toolkit::console::registry::Registry;
use mint_toolkit::console::uploads::{self, Limits, Upload};

#[derive(clap::Args)]
/// Re-verify an evidence bundle from the console: recompute it from the same images and model, byte for byte.
pub struct Args {
    /// The bundle (JSON) the console gave.
    #[arg(long)]
    bundle: PathBuf,
    #[command(flatten)]
    trust: crate::verify::TrustArgs,
    /// The model's console registration (console.json or its folder); by default the shipped
    /// model whose id the bundle names.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The image files the bundle was made from (any order; matched by sha256).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let trust = args.trust.trust(&args.bundle)?;
    let bundle = match Bundle::load(&args.bundle, &trust) {
        Ok((bundle, _)) => bundle,
        Err(e) => {
            println!("NOT verified: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    let evidence = &bundle.evidence;
    let id = evidence["model"]["id"].as_str().context("the bundle names no model")?;
    let model_path = match &args.model {
        Some(p) => p.clone(),
        None => mint_toolkit::console::registry::shipped_models()
            .into_iter()
            .find(|p| p.file_name().and_then(|n| n.to_str()) == Some(id))
            .with_context(|| format!("no shipped model '{id}': give --model"))?,
    };
    let model = Registry::load_one(&model_path, 0, args.threads)?;
    ensure!(model.id == id, "the bundle is for model '{id}', {} registers '{}'", model_path.display(), model.id);

    // The files by content, then in the bundle's order, under the bundle's names.
    let mut files = std::collections::HashMap::new();
    for path in &args.images {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        files.insert(format!("{:x}", Sha256::digest(&bytes)), bytes);
    }
    let mut uploads = Vec::new();
    let mut missing = Vec::new();
    for image in evidence["images"].as_array().context("the bundle lists no images")? {
        if image["index"].as_u64().is_some_and(|i| i > 0) {
            continue; // a later image of a file already taken
        }
        let sha = image["sha256"].as_str().unwrap_or_default();
        let name = image["file"].as_str().unwrap_or_default().to_owned();
        match files.get(sha) {
            Some(bytes) => uploads.push(Upload { name, bytes: bytes.clone() }),
            None => missing.push(format!("{name} (sha256 {sha})")),
        }
    }
    if !missing.is_empty() {
        let more = if missing.len() > 5 { format!(" and {} more", missing.len() - 5) } else { String::new() };
        bail!(
            "{} of the bundle's files are not among those given: {}{more}",
            missing.len(),
            missing[..missing.len().min(5)].join(", ")
        );
    }
    let limits = Limits {
        max_images: usize::MAX,
        max_side: u32::MAX,
        max_decode_bytes: u64::MAX,
        max_pixels: u64::MAX,
        max_work: std::time::Duration::MAX,
    };
    let decoded = uploads::decode(&uploads, model.input_shape, &limits).map_err(anyhow::Error::msg)?;
    // Recomputed at the level the console disclosed (absent in bundles of earlier consoles: all).
    let level = match evidence["disclosure"].as_str() {
        Some(name) => name.parse::<Disclosure>().map_err(anyhow::Error::msg)?,
        None => Disclosure::Scores,
    };
    let again = analysis::analyze(&model, &decoded, level)?;
    // The bytes, not the values: a number printed differently is a difference.
    let (recomputed, filed) = (again.to_string(), evidence.to_string());
    if recomputed.as_bytes() == filed.as_bytes() {
        println!(
            "verified: {} is signed by {} as issued {}, and its evidence recomputes byte for byte ({} images, model {id}, sha256 {})",
            args.bundle.display(),
            bundle.signer.fingerprint,
            bundle.issued_at,
            decoded.samples.len(),
            digest(evidence)
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("NOT verified: the recomputed evidence differs from the bundle's");
    for line in differences(evidence, &again, "evidence").into_iter().take(20) {
        println!("  {line}");
    }
    let same_outcome = evidence["verdict"]["outcome"] == again["verdict"]["outcome"];
    println!(
        "  the verdict is {} ({} in the bundle)",
        if same_outcome { "the same" } else { "DIFFERENT" },
        evidence["verdict"]["outcome"]
    );
    Ok(ExitCode::from(1))
}

/// Where two JSON values differ, as `path: bundle -> recomputed`.
fn differences(a: &Value, b: &Value, path: &str) -> Vec<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: Vec<&String> = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))).collect();
            keys.into_iter()
                .flat_map(|k| {
                    differences(
                        &x.get(k).cloned().unwrap_or(Value::Null),
                        &y.get(k).cloned().unwrap_or(Value::Null),
                        &format!("{path}.{k}"),
                    )
                })
                .collect()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().flat_map(|(i, (p, q))| differences(p, q, &format!("{path}[{i}]"))).collect()
        }
        _ if a == b => Vec::new(),
        _ => vec![format!("{path}: {a} -> {b}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_name_the_path() {
        let a = json!({"x": [1, {"y": 2}], "z": 3});
        let b = json!({"x": [1, {"y": 5}], "z": 3});
        assert_eq!(differences(&a, &b, "e"), vec!["e.x[1].y: 2 -> 5"]);
    }
}
