//! Head throughput at batch 1, 16, 64, 256 and 1024, as a ratio to onnxruntime (single-threaded) on the
//! same ONNX file, measured in the same run.
//!
//!     cargo bench --bench head            (onnxruntime from $MINT_BENCH_PYTHON or .venv/bin/python)
//!
//! The tract figure is the head as the auditor's worker runs it with `max_batch` 64: a plan
//! with a symbolic batch axis, plans for batches of exactly 1 and 64, one state per thread.

#[path = "support/python.rs"]
mod python;
#[path = "support/timing.rs"]
mod timing;

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use mint_audit::config::ScoreOutput;
use mint_head::HeadModel;

const BATCHES: [usize; 5] = [1, 16, 64, 256, 1024];

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

    let ort: Option<Vec<f64>> = python::python().and_then(|py| {
        let mut args = vec![path.display().to_string()];
        args.extend(BATCHES.iter().map(|b| b.to_string()));
        let v = python::json_of(&py, "ort_head.py", &args)?;
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
