//! CNN heads through backend plugins: the reference CPU plugin against PyTorch, plugins the
//! host must refuse, and plugin failures counted without ever failing the vendor's call.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use mint_audit::{AuditResult, Auditor, Config, DropReason, Error, Form, Layout, Outcome, TensorView};
use serde_json::json;

/// The CPU plugin, built once per test process.
fn cpu_plugin() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        run(Command::new(env!("CARGO")).args(["build", "-q", "-p", "mint-backend-cpu"]).current_dir(repo()));
        repo().join("target/debug/libmint_backend_cpu.so")
    })
}

/// The C test plugin, compiled with `defines`.
fn c_plugin(name: &str, defines: &[&str]) -> PathBuf {
    let dir = scratch(&format!("plugin-{name}"));
    let lib = dir.join(format!("libtest_{name}.so"));
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args(["-std=c11", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-O1"])
        .arg(format!("-I{}", repo().join("include").display()))
        .args(defines)
        .arg(repo().join("tests/system/c/test_plugin.c"))
        .arg("-o")
        .arg(&lib);
    run(&mut cmd);
    lib
}

/// The shipped model's configuration with a CNN head on stage1 through `library`.
fn cnn_config(library: &Path, backend_config: serde_json::Value, edit: impl FnOnce(&mut serde_json::Value)) -> Config {
    let mut c = shipped_config();
    c.as_object_mut().unwrap().remove("metrics");
    c["head"] = json!({"kind": "cnn", "tap": "stage1", "backend": {"library": library, "config": backend_config}});
    edit(&mut c);
    Config::from_json(&c.to_string(), &repo().join("models/fmnist-memorizing")).unwrap()
}

type Collected = Arc<Mutex<Vec<AuditResult>>>;

fn with_sink(config: Config) -> Result<(Auditor, Collected), Error> {
    let got: Collected = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let auditor =
        Auditor::with_sink(config, Arc::new(move |r: &[AuditResult]| sink.lock().unwrap().extend_from_slice(r)))?;
    Ok((auditor, got))
}

/// Stage1 full maps for `n` samples, and channel maxima / logits for the other taps.
fn cnn_taps(maps: &[f32], rest: &[Vec<f32>], n: usize) -> Vec<TensorView<'static>> {
    // Leaked for the test's lifetime: the views outlive the helpers' locals.
    let maps: &'static [f32] = Box::leak(maps.to_vec().into_boxed_slice());
    let mut views = vec![TensorView::map(maps, Layout::Nchw, [n, 16, 28, 28]).unwrap()];
    for (i, (d, c)) in rest.iter().zip(SHIPPED_CHANNELS).enumerate().skip(1) {
        let d: &'static [f32] = Box::leak(d[..n * c].to_vec().into_boxed_slice());
        views.push(TensorView::vectors(d, if i == 4 { Form::Vector } else { Form::ChannelMax }, n, c).unwrap());
    }
    views
}

#[test]
fn the_cpu_plugin_scores_as_pytorch_within_1e_5() {
    let dir = repo().join("models/fmnist-memorizing");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cnn_head_stage1.onnx.json")).unwrap()).unwrap();
    let expected: Vec<f32> = serde_json::from_value(report["reference"]["scores"].clone()).unwrap();
    let (shape, maps) = read_npy(&dir.join("cnn_head_stage1.onnx.reference.npy"));
    assert_eq!(&shape[1..], &[16, 28, 28]);
    let n = shape[0];
    let sha = report_sha(&dir.join("cnn_head_stage1.onnx"));
    let config = cnn_config(cpu_plugin(), json!({"head": "cnn_head_stage1.onnx", "sha256": sha}), |_| {});
    let (auditor, got) = with_sink(config).unwrap();
    let ids: Vec<u64> = (0..n as u64).collect();
    auditor.submit(&ids, &cnn_taps(&maps, &synthetic_reduced(n, 1), n)).unwrap();
    let stats = auditor.close(Duration::from_secs(60)).stats;
    assert_eq!(stats.audited(), n as u64, "{:?}", auditor.last_worker_error());
    let mut results = got.lock().unwrap().clone();
    results.sort_by_key(|r| r.sample_id);
    for (r, e) in results.iter().zip(&expected) {
        assert!((r.score - e).abs() <= 1e-5, "sample {}: plugin {} vs PyTorch {e}", r.sample_id, r.score);
    }
    assert!(auditor.render_metrics().contains("head_kind=\"cnn\""));
    assert!(auditor.render_metrics().contains(&format!("head_sha256=\"{sha}\"")));
}

fn report_sha(path: &Path) -> String {
    mint_head::file_sha256(path).unwrap()
}

#[test]
fn a_cpu_plugin_head_with_another_digest_is_refused() {
    let config = cnn_config(cpu_plugin(), json!({"head": "cnn_head_stage1.onnx", "sha256": "0".repeat(64)}), |_| {});
    let err = Auditor::new(config).err().unwrap().to_string();
    assert!(err.contains("cnn_head_stage1.onnx") && err.contains("sha256"), "{err}");
}

#[test]
fn plugins_for_another_abi_or_missing_symbols_are_refused() {
    if !ready("the C plugin tests", &[CC]) {
        return;
    }
    let cases: [(&str, &[&str], &str); 4] = [
        // The plugin reports its header's minor: 1 since ABI 1.1.
        ("major2", &["-DABI_MAJOR=2"], "built for backend ABI 2.1"),
        ("noflush", &["-DNO_FLUSH"], "mint_backend_api.flush is NULL"),
        ("short", &["-DSHORT_TABLE"], "mint_backend_api is 24 bytes"),
        ("noentry", &["-DNO_ENTRY"], "symbol `mint_backend_entry` not found"),
    ];
    for (name, defines, expected) in cases {
        let lib = c_plugin(name, defines);
        let err = Auditor::new(cnn_config(&lib, json!({"mode": "echo"}), |_| {})).err().expect("refused");
        assert_eq!(err.kind(), mint_audit::ErrorKind::Backend);
        let message = err.to_string();
        assert!(message.contains(&lib.display().to_string()), "names the file: {message}");
        assert!(message.contains(expected), "{name}: {message}");
    }
    let err = Auditor::new(cnn_config(Path::new("/nonexistent/libnope.so"), json!({}), |_| {})).err().unwrap();
    assert!(err.to_string().contains("/nonexistent/libnope.so") && err.to_string().contains("cannot load"));
}

#[test]
fn a_plugin_written_in_c_scores_through_the_host() {
    if !ready("the C plugin tests", &[CC]) {
        return;
    }
    let lib = c_plugin("echo", &[]);
    let (auditor, got) = with_sink(cnn_config(&lib, json!({"mode": "echo"}), |c| c["workers"] = json!(2))).unwrap();
    let maps = vec![0.5f32; 40 * 16 * 28 * 28];
    for k in 0..5u64 {
        let ids: Vec<u64> = (k * 8..k * 8 + 8).collect();
        auditor.submit(&ids, &cnn_taps(&maps[..8 * 16 * 784], &synthetic_reduced(8, k), 8)).unwrap();
    }
    let stats = auditor.close(Duration::from_secs(10)).stats;
    assert_eq!(stats.audited(), 40);
    for r in got.lock().unwrap().iter() {
        assert_eq!(r.score, (r.sample_id % 100) as f32 / 100.0);
    }
    // A plugin that refuses its configuration is refused in turn, with its own words.
    let err = Auditor::new(cnn_config(&lib, json!({"mode": "sing"}), |_| {})).err().unwrap().to_string();
    assert!(err.contains("unknown mode"), "{err}");
}

/// Runs 3 batches of 8 through a plugin in `mode` and returns the final counters.
fn run_mode(mode: &str, close_after: Duration) -> (Auditor, Collected, mint_audit::Stats) {
    let lib = c_plugin(mode, &[]);
    let (auditor, got) = with_sink(cnn_config(&lib, json!({"mode": mode}), |_| {})).unwrap();
    let maps = vec![0.25f32; 8 * 16 * 28 * 28];
    for k in 0..3u64 {
        let ids: Vec<u64> = (k * 8..k * 8 + 8).collect();
        // The vendor's call never fails because of the backend.
        auditor.submit(&ids, &cnn_taps(&maps, &synthetic_reduced(8, k), 8)).expect("submit succeeds");
    }
    let stats = auditor.close(close_after).stats;
    assert_eq!(stats.submitted, 24);
    assert_eq!(stats.submitted, stats.audited() + stats.dropped_total(), "{stats:?}");
    (auditor, got, stats)
}

#[test]
fn plugin_failures_are_counted_and_delivered_never_raised() {
    if !ready("the C plugin tests", &[CC]) {
        return;
    }
    for mode in ["fail_submit", "fail_answer"] {
        let (auditor, got, stats) = run_mode(mode, Duration::from_secs(10));
        assert_eq!(stats.dropped(DropReason::BackendError), 24, "{mode}");
        let text = auditor.render_metrics();
        assert!(!text.contains("mint_backend_errors_total 0"), "{mode}: errors counted");
        let why = auditor.last_worker_error().unwrap();
        assert!(why.contains("on fire") || why.contains("timed out after 3 retries"), "{mode}: {why}");
        assert!(got.lock().unwrap().iter().all(|r| r.outcome == Outcome::Dropped(DropReason::BackendError)));
    }
}

#[test]
fn a_plugin_is_identified_by_the_file_loaded_and_may_be_pinned() {
    if !ready("the C plugin tests", &[CC]) {
        return;
    }
    let lib = c_plugin("pinned", &[]);
    let digest = mint_head::file_sha256(&lib).unwrap();
    // Without a head digest in the backend's configuration, the head is the library loaded.
    let (auditor, _) = with_sink(cnn_config(&lib, json!({"mode": "echo"}), |_| {})).unwrap();
    assert_eq!(auditor.head_sha256(), digest);
    drop(auditor);
    let pinned =
        |sha: String| cnn_config(&lib, json!({"mode": "echo"}), |c| c["head"]["backend"]["sha256"] = json!(sha));
    assert!(with_sink(pinned(digest.clone())).is_ok());
    let err = with_sink(pinned("ab".repeat(32))).err().expect("another digest is refused").to_string();
    assert!(err.contains(&digest) && err.contains(&"ab".repeat(32)) && err.contains("libtest_pinned.so"), "{err}");
    let mut c = shipped_config();
    c["head"] = json!({"kind": "cnn", "tap": "stage1", "backend": {"library": lib, "sha256": "xyz"}});
    let err = Config::from_json(&c.to_string(), &repo()).unwrap_err().to_string();
    assert!(err.contains("head.backend.sha256"), "{err}");
}

#[test]
fn scores_that_are_not_probabilities_are_backend_errors_not_verdicts() {
    if !ready("the C plugin tests", &[CC]) {
        return;
    }
    let (auditor, got, stats) = run_mode("wild", Duration::from_secs(10));
    assert_eq!(stats.audited(), 0, "{stats:?}");
    assert_eq!(stats.dropped(DropReason::BackendError), 24);
    assert!(got.lock().unwrap().iter().all(|r| r.outcome == Outcome::Dropped(DropReason::BackendError)));
    assert!(auditor.last_worker_error().unwrap().contains("not probabilities"));
}

#[test]
fn unanswered_samples_are_abandoned_at_the_deadline() {
    if !ready("the C plugin tests", &[CC]) {
        return;
    }
    let (auditor, got, stats) = run_mode("never", Duration::from_millis(300));
    assert_eq!(stats.dropped(DropReason::Shutdown), 24);
    assert_eq!(got.lock().unwrap().len(), 24);
    assert!(auditor.last_worker_error().unwrap().contains("unanswered"));
    // Answers for ids never submitted are counted as the plugin's errors and ignored.
    // (The worker may merge the three submits into fewer batches: at least one stray answer.)
    let (auditor, got, stats) = run_mode("stranger", Duration::from_millis(300));
    assert_eq!(stats.dropped(DropReason::Shutdown), 24);
    assert!(!auditor.render_metrics().contains("mint_backend_errors_total 0"));
    assert!(got.lock().unwrap().iter().all(|r| r.sample_id < 24), "stray ids never reach the vendor");
}

#[test]
fn full_maps_over_the_copy_budget_are_dropped_and_counted() {
    if !ready("the C plugin tests", &[CC]) {
        return;
    }
    let lib = c_plugin("budget", &[]);
    // One sample's stage1 map is 16×28×28×4 = 50,176 bytes: a budget of 120,000 holds two.
    let (auditor, _) = with_sink(cnn_config(&lib, json!({"mode": "never"}), |c| {
        c["head"]["copy_budget_bytes"] = json!(120_000);
    }))
    .unwrap();
    let maps = vec![0.5f32; 4 * 16 * 28 * 28];
    let err = auditor.submit(&[1, 2, 3], &cnn_taps(&maps[..3 * 12544], &synthetic_reduced(3, 1), 3)).unwrap_err();
    assert!(matches!(err, Error::OverBudget { samples: 3, bytes: 150_528, budget: 120_000 }), "{err}");
    auditor.submit(&[4, 5], &cnn_taps(&maps[..2 * 12544], &synthetic_reduced(2, 2), 2)).unwrap();
    let stats = auditor.close(Duration::from_millis(200)).stats;
    assert_eq!(stats.dropped(DropReason::OverBudget), 3);
    assert_eq!(stats.submitted, stats.audited() + stats.dropped_total());
}

/// A KServe v2 server that says its model is ready, accepts every infer request and never
/// answers one; it stops when dropped.
struct SilentServer {
    addr: std::net::SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
                let mut head = [0u8; 4096];
                let n = s.read(&mut head).unwrap_or(0);
                if String::from_utf8_lossy(&head[..n]).contains("/ready") {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                } else {
                    held.push(s); // an infer request: never answered
                }
            }
        });
        SilentServer { addr, stop, thread: Some(thread) }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn close_keeps_its_deadline_against_a_server_that_never_answers() {
    run(Command::new(env!("CARGO")).args(["build", "-q", "-p", "mint-backend-triton"]).current_dir(repo()));
    let lib = repo().join("target/debug/libmint_backend_triton.so");
    let server = SilentServer::start();
    let backend = json!({"url": format!("http://{}", server.addr), "timeout_ms": 1500, "retries": 3,
                         "backoff_ms": 200, "max_in_flight": 1, "sha256": "ab".repeat(32)});
    let config = cnn_config(&lib, backend, |c| c["batching"] = json!({"max_batch": 8, "max_wait_ms": 1}));
    let (auditor, got) = with_sink(config).unwrap();
    let maps = vec![0.25f32; 8 * 16 * 28 * 28];
    let rest = synthetic_reduced(8, 12);
    for k in 0..20u64 {
        let ids: Vec<u64> = (k * 8..k * 8 + 8).collect();
        auditor.submit(&ids, &borrowed_taps(&maps, &rest, 8)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let report = auditor.close(Duration::from_millis(100));
    let took = started.elapsed();
    // Without a cancel this waited for every request's timeout and retries (tens of seconds).
    assert!(took < Duration::from_secs(1), "close(100 ms) took {took:?}");
    let s = report.stats;
    assert_eq!(s.submitted, 160);
    assert_eq!(s.submitted, s.audited() + s.dropped_total(), "{s:?}");
    assert_eq!(s.audited(), 0);
    assert_eq!(got.lock().unwrap().len(), 160, "every sample reached the sink, as a drop");
    let started = std::time::Instant::now();
    drop(auditor);
    // Freeing waits for the request on the wire, bounded by the plugin's own timeout_ms.
    assert!(started.elapsed() < Duration::from_millis(1500 + 1000), "free took {:?}", started.elapsed());
    drop(server);
}
