//! The CNN path: the copy of full maps on the vendor's thread, and audited samples per second
//! through a backend plugin.
//!
//!     cargo bench --bench cnn                 (copy cost, CPU plugin)
//!     bash benches/cnn_triton.sh              (the same, plus the Triton plugin against a local
//!                                              tritonserver: MINT_BENCH_TRITON_URL)
//!
//! Copy: one sample's map at each IResNet-100 tap size (112×112 input), through the code the
//! auditor runs on submit (checks, copy to NCHW f32, finiteness), as a ratio to a bare memcpy of
//! the same f32 bytes in alternating trials.
//! Throughput: 4,096 samples of the shipped model's stage-1 maps (16×28×28) submitted in batches
//! of 64 and scored by its CNN head, from submit to the last result.

#[path = "support/timing.rs"]
mod timing;

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use half::f16;
use mint_audit::config::{TapConfig, TapKind};
use mint_audit::{AuditResult, Auditor, Config, FeatureExtractor, Form, Layout, TensorView};
use serde_json::json;

const TAPS: [(usize, usize); 4] = [(64, 56), (128, 28), (256, 14), (512, 7)];

fn copy_table() -> String {
    let mut text = String::from("| tap | MB | layout | µs / sample | × bare memcpy |\n|---|---:|---|---:|---:|\n");
    for &(c, s) in &TAPS {
        let n = c * s * s;
        let nchw: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect();
        let mut nhwc = vec![0f32; n];
        for ch in 0..c {
            for p in 0..s * s {
                nhwc[p * c + ch] = nchw[ch * s * s + p];
            }
        }
        let half: Vec<f16> = nchw.iter().map(|&x| f16::from_f32(x)).collect();
        let taps = vec![TapConfig::new("t", c, TapKind::ActivationMap).with_spatial([s, s])];
        let extractor = FeatureExtractor::full_map(taps, 0, [c, s, s]);
        let mut dst = vec![0f32; n];
        let mut records = Vec::with_capacity(n);
        let views = [
            ("NCHW f32", TensorView::map(nchw.as_slice(), Layout::Nchw, [1, c, s, s]).unwrap()),
            ("NHWC f32", TensorView::map(nhwc.as_slice(), Layout::Nhwc, [1, s, s, c]).unwrap()),
            ("NCHW f16", TensorView::map(half.as_slice(), Layout::Nchw, [1, c, s, s]).unwrap()),
        ];
        for (name, view) in views {
            let (_, t, ratio) = timing::paired(
                || dst.copy_from_slice(black_box(&nchw)),
                || {
                    records.clear();
                    black_box(extractor.extract(black_box(std::slice::from_ref(&view)), &mut records).unwrap());
                },
                31,
                Duration::from_millis(10),
            );
            text.push_str(&format!(
                "| {c}×{s}×{s} | {:.2} | {name} | {:.1} | {ratio:.2} |\n",
                n as f64 * 4.0 / 1e6,
                t / 1e3
            ));
        }
    }
    text
}

/// Samples per second through an auditor whose CNN head runs in `backend`.
fn throughput(library: &Path, backend_config: serde_json::Value) -> f64 {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models = repo.join("models/fmnist-memorizing");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("auditor.json")).unwrap()).unwrap();
    c.as_object_mut().unwrap().remove("metrics");
    c["queue"] = json!({"capacity": 8192});
    c["batching"] = json!({"max_batch": 64, "max_wait_ms": 2});
    c["head"] = json!({"kind": "cnn", "tap": "stage1", "copy_budget_bytes": 1usize << 30,
                       "backend": {"library": library, "config": backend_config}});
    let config = Config::from_json(&c.to_string(), &models).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&done);
    let auditor = Auditor::with_sink(
        config,
        Arc::new(move |r: &[AuditResult]| {
            counter.fetch_add(r.len(), Ordering::Relaxed);
        }),
    )
    .unwrap();
    let n = 64;
    let maps: Vec<f32> = (0..n * 16 * 784).map(|i| ((i * 31) % 97) as f32 / 40.0).collect();
    let reduced: Vec<Vec<f32>> = [16usize, 32, 64, 128, 10].iter().map(|&ch| vec![0.5f32; n * ch]).collect();
    let mut views = vec![TensorView::map(maps.as_slice(), Layout::Nchw, [n, 16, 28, 28]).unwrap()];
    for (i, (d, ch)) in reduced.iter().zip([16usize, 32, 64, 128, 10]).enumerate().skip(1) {
        views.push(
            TensorView::vectors(d.as_slice(), if i == 4 { Form::Vector } else { Form::ChannelMax }, n, ch).unwrap(),
        );
    }
    // Warm up (plans, connections), then time 64 batches.
    auditor.submit(&(0..n as u64).collect::<Vec<_>>(), &views).unwrap();
    while done.load(Ordering::Relaxed) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    let total = 4096;
    let started = Instant::now();
    for k in 1..=(total / n) as u64 {
        let ids: Vec<u64> = (k * n as u64..(k + 1) * n as u64).collect();
        while auditor.submit(&ids, &views).is_err() {
            std::thread::sleep(Duration::from_micros(200)); // queue full: wait, nothing is lost here
        }
    }
    while done.load(Ordering::Relaxed) < total + n {
        std::thread::sleep(Duration::from_millis(1));
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    auditor.close(Duration::from_secs(10));
    rate
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models = repo.join("models/fmnist-memorizing");
    let head = models.join("cnn_head_stage1.onnx");
    let sha = mint_head::file_sha256(&head).unwrap();
    let target = repo.join("target/release");
    let mut text = format!(
        "### CNN path: copying full maps on the vendor's thread\n\nCPU: {}; flags: {}.\n\n{}\n",
        timing::cpu_name(),
        timing::cpu_flags(),
        copy_table()
    );
    let cpu = throughput(&target.join("libmint_backend_cpu.so"), json!({"head": head, "sha256": sha}));
    text.push_str(&format!(
        "### CNN path: audited samples per second (shipped stage-1 CNN head, 16×28×28 maps, batches of 64)\n\n\
         | backend | samples/s | × CPU plugin |\n|---|---:|---:|\n| CPU plugin (tract, 1 worker thread) | {cpu:.0} | 1.00 |\n"
    ));
    match std::env::var("MINT_BENCH_TRITON_URL") {
        Ok(url) => {
            let triton = throughput(
                &target.join("libmint_backend_triton.so"),
                json!({"url": url, "model": "mint_cnn", "sha256": sha, "max_in_flight": 4}),
            );
            text.push_str(&format!(
                "| Triton plugin → local tritonserver 2.51 (python backend, onnxruntime CPU) | {triton:.0} | {:.2} |\n",
                triton / cpu
            ));
        }
        Err(_) => text.push_str("| Triton plugin | (set MINT_BENCH_TRITON_URL: benches/cnn_triton.sh) | |\n"),
    }
    timing::write_result("cnn", &text);
}
