//! The Triton backend against a real NVIDIA tritonserver (the binary bundled in the
//! `nvidia-pytriton` wheel, CPU-only here), serving the CNN head with its python backend from
//! examples/triton/: the scores must equal the CPU plugin's within 1e-4, and Triton's own
//! metrics must show the requests.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mint_audit::{AuditResult, Auditor, Config};
use serde_json::json;

fn read_idx_images(path: &Path, n: usize) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], &[0, 0, 8, 3]);
    bytes[16..16 + n * 784].iter().map(|&b| b as f32 / 255.0).collect()
}

fn auditor(library: &Path, backend_config: serde_json::Value, got: Arc<Mutex<Vec<AuditResult>>>) -> Auditor {
    let mut c = shipped_config();
    c.as_object_mut().unwrap().remove("metrics");
    c["batching"] = json!({"max_batch": 64, "max_wait_ms": 5});
    c["head"] = json!({"kind": "cnn", "tap": "stage1", "backend": {"library": library, "config": backend_config}});
    let config = Config::from_json(&c.to_string(), &repo().join("models/fmnist-memorizing")).unwrap();
    Auditor::with_sink(config, Arc::new(move |r: &[AuditResult]| got.lock().unwrap().extend_from_slice(r))).unwrap()
}

/// Scores `images` through an auditor that runs the model itself; returns scores by id.
fn scores(auditor: &Auditor, got: &Mutex<Vec<AuditResult>>, images: &[f32], n: usize) -> Vec<f32> {
    let mut logits = vec![0f32; 32 * 10];
    for start in (0..n).step_by(32) {
        let k = 32.min(n - start);
        let ids: Vec<u64> = (start as u64..(start + k) as u64).collect();
        auditor.infer(&ids, &images[start * 784..(start + k) * 784], &mut logits[..k * 10]).unwrap();
    }
    let stats = auditor.close(Duration::from_secs(120)).stats;
    assert_eq!(stats.audited(), n as u64, "{stats:?}; last error: {:?}", auditor.last_worker_error());
    let mut by_id = vec![f32::NAN; n];
    for r in got.lock().unwrap().iter() {
        by_id[r.sample_id as usize] = r.score;
    }
    by_id
}

#[test]
fn triton_scores_equal_the_cpu_plugin_and_triton_counts_them() {
    if !ready("the Triton test", &[TRITON, PROMTOOL]) {
        return;
    }
    let python = triton_python().expect("checked by `ready`");
    run(Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "mint-backend-cpu", "-p", "mint-backend-triton"])
        .current_dir(repo()));
    let models = repo().join("models/fmnist-memorizing");
    let head = models.join("cnn_head_stage1.onnx");
    let sha = mint_head::file_sha256(&head).unwrap();

    let dir = scratch("triton");
    let (http, grpc, metrics) = (free_port(), free_port(), free_port());
    let log = std::fs::File::create(dir.join("tritonserver.log")).unwrap();
    let _server = Server(
        Command::new("bash")
            .arg(repo().join("examples/triton/start.sh"))
            .arg(&head)
            .arg(dir.join("work"))
            .args(["--http-port", &http.to_string(), "--grpc-port", &grpc.to_string()])
            .args(["--metrics-port", &metrics.to_string(), "--log-verbose=0"])
            .env("MINT_TRITON_PYTHON", &python)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while ureq::get(&format!("{base}/v2/models/mint_cnn/ready")).call().map(|r| r.status() != 200).unwrap_or(true) {
        assert!(
            Instant::now() < deadline,
            "tritonserver did not get ready; log:\n{}",
            std::fs::read_to_string(dir.join("tritonserver.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let n = 300;
    let mut images = read_idx_images(&models.join("demo-members-idx3-ubyte"), 150);
    images.extend(read_idx_images(&models.join("demo-non-members-idx3-ubyte"), 150));

    let got = Arc::new(Mutex::new(Vec::new()));
    let via_triton = auditor(
        &repo().join("target/debug/libmint_backend_triton.so"),
        json!({"url": base, "model": "mint_cnn", "sha256": sha, "max_in_flight": 3, "timeout_ms": 20000}),
        Arc::clone(&got),
    );
    let triton_scores = scores(&via_triton, &got, &images, n);

    // The plugin's own series are in the auditor's exposition, and promtool accepts the whole.
    let text = via_triton.render_metrics();
    let line = text.lines().find(|l| l.starts_with("mint_backend_triton_samples_total{outcome=\"scored\"}")).unwrap();
    assert_eq!(line.rsplit(' ').next().unwrap(), n.to_string());
    std::fs::write(dir.join("exposition.txt"), &text).unwrap();
    let promtool = Command::new(require("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(dir.join("exposition.txt")).unwrap())
        .output()
        .unwrap();
    assert!(promtool.status.success(), "{}", String::from_utf8_lossy(&promtool.stdout));

    let got = Arc::new(Mutex::new(Vec::new()));
    let via_cpu = auditor(
        &repo().join("target/debug/libmint_backend_cpu.so"),
        json!({"head": head, "sha256": sha}),
        Arc::clone(&got),
    );
    let cpu_scores = scores(&via_cpu, &got, &images, n);
    let worst = triton_scores.iter().zip(&cpu_scores).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-4, "Triton (onnxruntime) and the CPU plugin (tract) differ by {worst}");

    // Triton's own count of successful requests moved.
    let exposition =
        ureq::get(&format!("http://127.0.0.1:{metrics}/metrics")).call().unwrap().into_body().read_to_string().unwrap();
    let success: f64 = exposition
        .lines()
        .filter(|l| l.starts_with("nv_inference_request_success{") && l.contains("model=\"mint_cnn\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(success >= 1.0, "nv_inference_request_success did not move:\n{exposition}");
    eprintln!("Triton served {success} requests for {n} samples; max |Triton - CPU| = {worst:e}");
}
