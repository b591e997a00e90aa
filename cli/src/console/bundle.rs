//! The evidence bundle a data owner files with a regulator, and `mint verify-bundle`, which
//! recomputes it from the same images and model.
//!
//! A bundle is `{"format", "issued_at", "evidence_sha256", "evidence"}`: the evidence is what
//! [`analysis`](super::analysis) computed (model, head digest, calibration, library version,
//! each image's sha256 and score, the tests), with no image in it; its sha256 is over its
//! compact JSON. Verification recomputes the evidence and compares that JSON byte for byte.
//! Scores come from floating-point kernels chosen for the CPU, so a bundle made on a machine
//! with other instruction sets may differ in the last digits: the command then says what
//! differs and whether the conclusions do.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::analysis;
use super::registry::Registry;
use super::uploads::{self, Limits, Upload};

pub const BUNDLE_FORMAT: &str = "mint-evidence-bundle/1";

pub struct Bundle {
    issued_at: SystemTime,
    evidence: Value,
}

impl Bundle {
    pub fn new(evidence: Value, issued_at: SystemTime) -> Bundle {
        Bundle { issued_at, evidence }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "format": BUNDLE_FORMAT,
            "issued_at": rfc3339(self.issued_at),
            "evidence_sha256": digest(&self.evidence),
            "evidence": self.evidence,
            "verify_with": "mint verify-bundle --bundle THIS_FILE IMAGE_FILES...",
        })
    }
}

/// sha256 of the evidence's compact JSON.
fn digest(evidence: &Value) -> String {
    format!("{:x}", Sha256::digest(evidence.to_string().as_bytes()))
}

/// `YYYY-MM-DDTHH:MM:SSZ`, UTC.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[derive(clap::Args)]
/// Re-verify an evidence bundle from the console: recompute it from the same images and model, byte for byte.
pub struct Args {
    /// The bundle (JSON) the console gave.
    #[arg(long)]
    bundle: PathBuf,
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
    let text = std::fs::read_to_string(&args.bundle).with_context(|| format!("reading {}", args.bundle.display()))?;
    let bundle: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", args.bundle.display()))?;
    ensure!(bundle["format"] == BUNDLE_FORMAT, "{}: not a {BUNDLE_FORMAT} file", args.bundle.display());
    let evidence = &bundle["evidence"];
    ensure!(
        bundle["evidence_sha256"].as_str() == Some(digest(evidence).as_str()),
        "{}: evidence_sha256 does not match the evidence: the file was changed after it was issued",
        args.bundle.display()
    );
    let id = evidence["model"]["id"].as_str().context("the bundle names no model")?;
    let model_path = match &args.model {
        Some(p) => p.clone(),
        None => super::shipped_models()
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
    let again = analysis::analyze(&model, &decoded)?;
    // The bytes, not the values: a number printed differently is a difference.
    let (recomputed, filed) = (again.to_string(), evidence.to_string());
    if recomputed.as_bytes() == filed.as_bytes() {
        println!(
            "verified: the evidence of {} recomputes byte for byte ({} images, model {id}, sha256 {})",
            args.bundle.display(),
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

    #[test]
    fn dates_are_utc_civil_dates() {
        let at = |s: u64| rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_169_600 + 3_723), "2026-12-02T01:02:03Z");
    }

    #[test]
    fn differences_name_the_path() {
        let a = json!({"x": [1, {"y": 2}], "z": 3});
        let b = json!({"x": [1, {"y": 5}], "z": 3});
        assert_eq!(differences(&a, &b, "e"), vec!["e.x[1].y: 2 -> 5"]);
    }
}
