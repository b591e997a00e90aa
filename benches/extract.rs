//! The audited model's forward pass as `mint extract` and `Auditor::infer` run it (tract,
//! through `TappedModel` with every tap exposed), against onnxruntime with the same tensors as
//! outputs: samples per second on 1 and on 2 threads, the ratio in the same run.
//!
//!     cargo bench --features onnxruntime --bench extract
//!
//! Three rows per model: tract (the default runtime), the library on onnxruntime
//! (`model.runtime: "onnxruntime"`, the `ort` crate on the venv wheel's libonnxruntime, rows
//! only with the feature), and onnxruntime's own Python API as the reference (from
//! $MINT_BENCH_PYTHON or .venv/bin/python).
//!
//! Models: the two shipped Fashion-MNIST models in batches of 64 (`mint extract`'s default),
//! and the ResNet-18 at 224² of the overhead benchmark in batches of 8. The library's threads
//! each run their own `TappedRunner` on their share of the batches, as `mint extract
//! --threads` does; onnxruntime's own are intra-op threads on one session. Rounds alternate between the
//! runtimes; tract's runners go sample by sample (their default) or are pinned to whole batches.

#[path = "support/python.rs"]
mod python;
#[path = "support/timing.rs"]
mod timing;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use mint_audit::{Config, Runtime, TappedModel, TappedRunner};

const ROUNDS: usize = 3;

struct Case {
    name: &'static str,
    dir: PathBuf,
    batch: usize,
    samples: usize,
}

/// The runtimes the library can run the model on in this build.
fn runtimes() -> Vec<Runtime> {
    let mut all = vec![Runtime::Tract];
    if cfg!(feature = "onnxruntime") {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv");
        let found =
            std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).or_else(|| Runtime::onnxruntime_in_venv(&venv));
        all.push(Runtime::Onnxruntime { library: found.expect("no libonnxruntime: set ORT_DYLIB_PATH") });
    }
    all
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How a tract runner runs batches: sample by sample (its default), or pinned to whole batches.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    PerSample,
    Batched,
}

/// A runner set to `way`, warmed up on the input batch.
fn ready_runner(model: &TappedModel, input: &[f32], batch: usize, way: Way) -> TappedRunner {
    let mut runner = model.runner().unwrap();
    runner.pin_strategy(way == Way::PerSample);
    runner.run(input, batch).unwrap();
    runner
}

/// The library's samples per second on `threads` threads (one runner each) over `samples`
/// samples, and how its runners ran batches.
fn library_rate(
    (model, way): (&TappedModel, Way),
    input: &[f32],
    batch: usize,
    samples: usize,
    threads: usize,
) -> (f64, String) {
    let mut runners: Vec<TappedRunner> = (0..threads).map(|_| ready_runner(model, input, batch, way)).collect();
    let strategy = runners.iter().map(|r| r.strategy()).collect::<Vec<_>>().join("/");
    let batches = samples / batch;
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for runner in &mut runners {
            let next = &next;
            scope.spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < batches {
                    runner.run(input, batch).unwrap();
                    std::hint::black_box(runner.views().unwrap());
                }
            });
        }
    });
    ((batches * batch) as f64 / started.elapsed().as_secs_f64(), strategy)
}

fn ort_rates(py: &Path, case: &Case) -> Option<(f64, f64)> {
    let args = [case.dir.display().to_string(), case.batch.to_string(), case.samples.to_string(), "1".into()];
    let v = python::json_of(py, "extract_ort.py", &args)?;
    Some((v["threads_1"].as_f64()?, v["threads_2"].as_f64()?))
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let overhead = python::overhead_models(&["resnet18_224"]);
    let cases = [
        Case { name: "fmnist-memorizing", dir: repo.join("models/fmnist-memorizing"), batch: 64, samples: 2048 },
        Case { name: "fmnist-generalizing", dir: repo.join("models/fmnist-generalizing"), batch: 64, samples: 2048 },
        Case { name: "resnet18_224", dir: overhead.join("resnet18_224"), batch: 8, samples: 32 },
    ];
    let py = python::python();
    let mut table = format!(
        "CPU: {}; flags: {}\n\n\
         | model | batch | runtime | 1 thread (samples/s) | 2 threads | 2 / 1 | 1 thread / onnxruntime's own |\n\
         |---|---:|---|---:|---:|---:|---:|\n",
        timing::cpu_name(),
        timing::cpu_flags(),
    );
    for case in &cases {
        let config = Config::from_path(case.dir.join("auditor.json")).unwrap();
        let names: Vec<&str> = config.taps.iter().map(|t| t.tensor.as_deref().unwrap()).collect();
        let shape = config.model.input_shape.clone().unwrap();
        let per: usize = shape.iter().product();
        let input: Vec<f32> = (0..case.batch * per).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let mut models: Vec<(TappedModel, Way)> = runtimes()
            .iter()
            .map(|runtime| {
                (TappedModel::load_with(&case.dir.join("model.onnx"), &names, &shape, runtime).unwrap(), Way::PerSample)
            })
            .collect();
        // tract pinned to whole batches, to show what the runner's choice gains.
        models.insert(1, (models[0].0.clone(), Way::Batched));
        let mut rates = vec![(Vec::new(), Vec::new()); models.len()];
        let mut strategies = vec![String::new(); models.len()];
        let (mut ort_one, mut ort_two) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            for (m, &(ref model, way)) in models.iter().enumerate() {
                let (rate, strategy) = library_rate((model, way), &input, case.batch, case.samples, 1);
                rates[m].0.push(rate);
                rates[m].1.push(library_rate((model, way), &input, case.batch, case.samples, 2).0);
                strategies[m] = strategy;
            }
            if let Some((a, b)) = py.as_deref().and_then(|py| ort_rates(py, case)) {
                ort_one.push(a);
                ort_two.push(b);
            }
        }
        let ort = |v: Vec<f64>| if v.is_empty() { f64::NAN } else { median(v) };
        let (ort_one, ort_two) = (ort(ort_one), ort(ort_two));
        for (((model, way), (one, two)), strategy) in models.iter().zip(rates).zip(strategies) {
            let (one, two) = (median(one), median(two));
            let runtime = match model.runtime() {
                Runtime::Tract if *way == Way::Batched => "mint on tract, pinned to whole batches".to_string(),
                Runtime::Tract => format!("mint on tract ({strategy})"),
                other => format!("mint on {}", other.name()),
            };
            table.push_str(&format!(
                "| {} | {} | {runtime} | {one:.1} | {two:.1} | {:.2} | {:.2} |\n",
                case.name,
                case.batch,
                two / one,
                one / ort_one,
            ));
        }
        table.push_str(&format!(
            "| {} | {} | onnxruntime's own (Python) | {ort_one:.1} | {ort_two:.1} | {:.2} | 1 |\n",
            case.name,
            case.batch,
            ort_two / ort_one,
        ));
    }
    table.push_str(&format!("\nmedians of {ROUNDS} alternating rounds; NaN: onnxruntime not available\n"));
    timing::write_result("extract", &table);
}
