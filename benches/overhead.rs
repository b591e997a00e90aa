//! What auditing adds to a realistic model's own inference, the figure vendors ask first: a
//! ResNet-18 at 224² and a ResNet-50 at 112² (random weights, `research/mint_research/make_overhead_models.py`,
//! made into target/overhead-models on first use), 4 stage taps and the logits, every sample
//! audited by a Vanilla head on a worker.
//!
//!     cargo bench --bench overhead           (onnxruntime from $MINT_BENCH_PYTHON or .venv/bin/python)
//!
//! For each runtime and batch size, in alternating pairs: the model's forward pass alone, and
//! the forward pass followed by `submit` of its taps (the reduction of the maps on the vendor's
//! thread; the head runs on a worker, on the other core). Reported: the medians, their ratio,
//! and the submit call alone against the forward pass (the added latency per batch, which the
//! ratio of two noisy medians blurs). onnxruntime runs in Python (`benches/overhead_ort.py`)
//! with the `mint_audit` package submitting its outputs, as a Python vendor would; both
//! runtimes on one thread.

#[path = "support/python.rs"]
mod python;
#[path = "support/timing.rs"]
mod timing;

use std::path::Path;
use std::time::{Duration, Instant};

use mint_audit::{Auditor, Config, TappedModel};

const MODELS: [&str; 2] = ["resnet18_224", "resnet50_112"];
const BATCHES: [usize; 2] = [1, 8];
const PAIRS: usize = 15;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One row: forward alone, forward + submit, submit alone (ms, medians), drops.
struct Row {
    forward: f64,
    audited: f64,
    submit: f64,
    dropped: u64,
}

fn tract_row(dir: &Path, batch: usize) -> Row {
    let mut config = Config::from_path(dir.join("auditor.json")).unwrap();
    config.metrics.http = None;
    let names: Vec<String> = config.taps.iter().map(|t| t.tensor.clone().unwrap()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let shape = config.model.input_shape.clone().unwrap();
    let model = TappedModel::load(config.model.onnx.as_ref().unwrap(), &names, &shape).unwrap();
    let auditor = Auditor::new(config).unwrap();
    let per: usize = shape.iter().product();
    let input: Vec<f32> = (0..batch * per).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let mut runner = model.runner().unwrap();
    let mut next = 0u64;
    let (mut forward, mut audited, mut submit) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..=PAIRS {
        let t = Instant::now();
        runner.run(&input, batch).unwrap();
        let plain = t.elapsed();
        let t = Instant::now();
        runner.run(&input, batch).unwrap();
        let ran = t.elapsed();
        let views = runner.views().unwrap();
        let ids: Vec<u64> = (next..next + batch as u64).collect();
        next += batch as u64;
        let s = Instant::now();
        auditor.submit(&ids, &views).unwrap();
        let handed = s.elapsed();
        if pair > 0 {
            // pair 0 warms up
            forward.push(plain.as_secs_f64() * 1e3);
            audited.push((ran + handed).as_secs_f64() * 1e3);
            submit.push(handed.as_secs_f64() * 1e3);
        }
    }
    let report = auditor.close(Duration::from_secs(60));
    Row {
        forward: median(forward),
        audited: median(audited),
        submit: median(submit),
        dropped: report.stats.dropped_total(),
    }
}

fn ort_row(py: &Path, dir: &Path, batch: usize) -> Option<Row> {
    let args = [dir.display().to_string(), batch.to_string(), PAIRS.to_string()];
    let v = python::json_of(py, "overhead_ort.py", &args)?;
    Some(Row {
        forward: v["forward_ms"].as_f64()?,
        audited: v["audited_ms"].as_f64()?,
        submit: v["submit_ms"].as_f64()?,
        dropped: v["dropped"].as_u64()?,
    })
}

fn main() {
    let models = python::overhead_models(&MODELS);
    let py = python::python();
    let mut table = format!(
        "CPU: {}; flags: {}; reduce kernels: {}\n\n\
         | model | runtime | batch | forward ms | forward + audit ms | ratio | submit ms | submit / forward | dropped |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        timing::cpu_name(),
        timing::cpu_flags(),
        mint_audit::reduce_isa()
    );
    for m in MODELS {
        let dir = models.join(m);
        for batch in BATCHES {
            let mut rows = vec![("tract", Some(tract_row(&dir, batch)))];
            if let Some(py) = &py {
                rows.push(("onnxruntime", ort_row(py, &dir, batch)));
            }
            for (runtime, row) in rows {
                let Some(r) = row else {
                    table.push_str(&format!("| {m} | {runtime} | {batch} | (not run) | | | | | |\n"));
                    continue;
                };
                table.push_str(&format!(
                    "| {m} | {runtime} | {batch} | {:.2} | {:.2} | {:.3} | {:.3} | {:.2}% | {} |\n",
                    r.forward,
                    r.audited,
                    r.audited / r.forward,
                    r.submit,
                    100.0 * r.submit / r.forward,
                    r.dropped
                ));
            }
        }
    }
    table.push_str(&format!(
        "\nmedians over {PAIRS} alternating pairs after one warm-up pair; one thread per runtime\n"
    ));
    timing::write_result("overhead", &table);
}
