//! Head throughput at batch 1, 16, 64, 256 and 1024, as a ratio to onnxruntime (single-threaded) on the
//! same ONNX file, measured in the same run.
//!
//!     cargo bench --bench head            (onnxruntime from $MINT_BENCH_PYTHON or .venv/bin/python)
//!
//! The tract figure is the head as the auditor's worker runs it with `max_batch` 64: a plan
//! with a symbolic batch axis, plans for batches of exactly 1 and 64, one state per thread.

#[path = "support/timing.rs"]
mod timing;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mint_audit::config::ScoreOutput;
use mint_head::HeadModel;

const BATCHES: [usize; 5] = [1, 16, 64, 256, 1024];

fn python() -> Option<PathBuf> {
    let from_env = std::env::var_os("MINT_BENCH_PYTHON").map(PathBuf::from);
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    from_env.or_else(|| venv.exists().then_some(venv))
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = repo.join("models/fmnist-memorizing/head.onnx");
    let width = 250;
    let input: Vec<f32> = (0..1024 * width).map(|i| ((i * 7919) % 1000) as f32 / 300.0).collect();
    let mut scores = Vec::with_capacity(1024);
    let mut tract = Vec::new();
    let mut symbolic = Vec::new();
    for b in BATCHES {
        // As the auditor's worker loads it with `max_batch: b`: plans for 1 and b beside the
        // symbolic one.
        let head = HeadModel::load(&path, None, &[width], ScoreOutput::Probability).unwrap();
        let mut plain = head.runner().unwrap();
        let t = timing::ns_per_call(
            || {
                scores.clear();
                plain.score(black_box(&input[..b * width]), b, &mut scores).unwrap();
            },
            15,
            Duration::from_millis(60),
        );
        symbolic.push(b as f64 / t * 1e9);
        let mut runner = head.with_batch_plans(&[1, b]).unwrap().runner().unwrap();
        let t = timing::ns_per_call(
            || {
                scores.clear();
                runner.score(black_box(&input[..b * width]), b, &mut scores).unwrap();
            },
            15,
            Duration::from_millis(60),
        );
        tract.push(b as f64 / t * 1e9);
    }

    let ort: Option<Vec<f64>> = python().and_then(|py| {
        let out = Command::new(py)
            .arg(repo.join("benches/ort_head.py"))
            .arg(&path)
            .args(BATCHES.iter().map(|b| b.to_string()))
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("onnxruntime baseline failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(BATCHES.iter().map(|b| v[b.to_string()].as_f64().unwrap()).collect())
    });

    let mut text = format!(
        "### Head throughput: shipped Vanilla head ({width} features → 64 → 1, with standardisation and confidence features)\n\n\
         CPU: {}; flags: {}; one thread each. tract as the worker runs it (with a plan for this exact batch \
         size), and with the symbolic-batch plan alone.\n\n\
         | batch | tract (samples/s) | tract, symbolic plan only | onnxruntime 1 thread | tract / onnxruntime |\n\
         |---:|---:|---:|---:|---:|\n",
        timing::cpu_name(),
        timing::cpu_flags()
    );
    for (i, b) in BATCHES.iter().enumerate() {
        match &ort {
            Some(o) => text.push_str(&format!(
                "| {b} | {:.0} | {:.0} | {:.0} | {:.2} |\n",
                tract[i],
                symbolic[i],
                o[i],
                tract[i] / o[i]
            )),
            None => text.push_str(&format!(
                "| {b} | {:.0} | {:.0} | (no onnxruntime: set MINT_BENCH_PYTHON) | |\n",
                tract[i], symbolic[i]
            )),
        }
    }
    timing::write_result("head", &text);
}
