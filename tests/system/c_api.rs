//! The C API from C: tests/system/c/test_auditor.c built by the system compiler against the installed
//! header and library (pkg-config flags only), run normally, under AddressSanitizer, and with an
//! injected panic; its rendered metrics are checked by promtool.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

fn write_fixtures(dir: &Path) {
    let good = shipped_config();
    let write = |name: &str, v: &serde_json::Value| std::fs::write(dir.join(name), v.to_string()).unwrap();
    let mut c = good.clone();
    c["workers"] = json!(2);
    write("good.json", &c);

    let mut c = good.clone();
    c["workers"] = json!(1);
    write("one_worker.json", &c);

    // The library's own model run on onnxruntime, from the venv's wheel (scripts/setup.sh).
    let library = mint_audit::Runtime::onnxruntime_in_venv(&repo().join(".venv"))
        .expect("no onnxruntime/capi/libonnxruntime.so.* in .venv: run scripts/setup.sh");
    let mut c = good.clone();
    c["model"]["runtime"] = json!("onnxruntime");
    c["model"]["onnxruntime_library"] = json!(library);
    write("onnxruntime.json", &c);

    let mut c = good.clone();
    c["queue"] = json!({"capacity": 4});
    write("tiny_queue.json", &c);

    let mut c = good.clone();
    c["cohorts"] = json!(["reference", "suspect"]);
    c["evidence"] = json!({"window": 10, "min_reference": 10});
    // One worker scores batches in the order submitted: the reference is ahead of each window.
    c["workers"] = json!(1);
    // A fixed threshold, so that the test sees the uncalibrated state whatever ships.
    c["head"].as_object_mut().unwrap().remove("calibration");
    c["head"]["threshold"] = json!(0.5);
    write("cohorts.json", &c);

    let mut c = good.clone();
    c["head"]["sha256"] = json!("0".repeat(64));
    write("digest_mismatch.json", &c);

    // The four maps as token sequences of the same channel counts, so that the shipped head
    // scores them.
    let mut c = good.clone();
    c["model"].as_object_mut().unwrap().remove("onnx");
    c["model"].as_object_mut().unwrap().remove("input_shape");
    for (tap, pooling) in c["taps"].as_array_mut().unwrap().iter_mut().zip(["max", "last", "first", "max"]) {
        let tap = tap.as_object_mut().unwrap();
        tap.remove("spatial");
        tap.remove("tensor");
        tap.insert("kind".into(), json!("token_sequence"));
        tap.insert("pooling".into(), json!(pooling));
        tap.insert("max_tokens".into(), json!(32));
    }
    write("sequences.json", &c);

    // The shipped language model's configuration (token scores given by the vendor), and the
    // same with the logits scored by the library (a token_logits tap).
    let lm = repo().join("models/fortunes-lm-memorizing");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lm.join("auditor.json")).unwrap()).unwrap();
    c["head"]["path"] = json!(lm.join("head.onnx"));
    c.as_object_mut().unwrap().remove("metrics");
    write("lm_scores.json", &c);
    c["taps"][4] = json!({"name": "logits", "channels": 256, "kind": "token_logits", "max_tokens": 128});
    write("lm_logits.json", &c);

    let not_onnx = dir.join("not-a-head.onnx");
    std::fs::write(&not_onnx, "this is not an ONNX model\n").unwrap();
    let mut c = good.clone();
    c["head"]["path"] = json!(not_onnx);
    c["head"]["sha256"] = json!(mint_head::file_sha256(&not_onnx).unwrap());
    write("bad_head.json", &c);

    let mut c = good.clone();
    c["head"] =
        json!({"kind": "cnn", "tap": "stage1", "backend": {"library": "/nonexistent/libmint_backend_nowhere.so"}});
    write("no_backend.json", &c);

    // The CNN path through the installed CPU plugin, with room for one full map only.
    let cnn_head = repo().join("models/fmnist-memorizing/cnn_head_stage1.onnx");
    let mut c = good.clone();
    c["head"] = json!({
        "kind": "cnn", "tap": "stage1", "copy_budget_bytes": 60_000,
        "backend": {"library": installed_prefix().join("lib/libmint_backend_cpu.so"),
                    "config": {"head": cnn_head, "sha256": mint_head::file_sha256(&cnn_head).unwrap()}},
    });
    write("cnn_small_budget.json", &c);
}

fn build_test_program(name: &str, extra: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch(name);
    write_fixtures(&dir);
    let exe = dir.join("test_auditor");
    compile_c(&[&repo().join("tests/system/c/test_auditor.c")], &exe, extra);
    (dir, exe)
}

#[test]
fn c_api_suite_and_promtool() {
    if !ready("the C API test", &[CC, PKG_CONFIG, PROMTOOL]) {
        return;
    }
    let (dir, exe) = build_test_program("c-api", &[]);
    let metrics = dir.join("metrics.txt");
    let out = run(Command::new(&exe).arg(&dir).arg(&metrics));
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(stdout.contains("all C API tests passed"), "{stdout}");

    // The exposition a C caller rendered passes promtool's own checks.
    let text = std::fs::read_to_string(&metrics).unwrap();
    let mut promtool = Command::new(require("promtool", "prometheus"));
    promtool.args(["check", "metrics"]).stdin(std::fs::File::open(&metrics).unwrap());
    let checked = promtool.output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // submitted = audited + dropped, read off the exposition itself.
    let value = |series: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(series))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let submitted = value("mint_samples_submitted_total");
    assert_eq!(submitted, 10_000.0);
    assert_eq!(submitted, value("mint_samples_audited_total") + value("mint_samples_dropped_total"));
}

#[test]
fn c_api_panic_becomes_a_status() {
    if !ready("the C API test", &[CC, PKG_CONFIG, PROMTOOL]) {
        return;
    }
    let (dir, exe) = build_test_program("c-api-panic", &[]);
    let out = run(Command::new(&exe).arg("--panic").arg(&dir).env("MINT_FAULT_INJECT_PANIC", "mint_auditor_stats"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok panic"));
    // The panic's message went to mint_last_error(), not to the host's stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "a caught panic printed on the host's stderr:\n{stderr}");
}

#[test]
fn c_api_under_address_sanitizer() {
    if !ready("the C API test", &[CC, PKG_CONFIG, PROMTOOL]) {
        return;
    }
    let (dir, exe) = build_test_program("c-api-asan", &["-fsanitize=address", "-fno-omit-frame-pointer"]);
    let out = run(Command::new(&exe)
        .arg(&dir)
        .arg(dir.join("metrics.txt"))
        // Rust's runtime keeps some allocations for the life of the process (thread-locals,
        // lazily built statics); leak checking would flag those, not our API's.
        .env("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1:halt_on_error=1"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("all C API tests passed"));
}

#[test]
fn c_api_under_valgrind() {
    if !ready("the C API test under valgrind", &[CC, PKG_CONFIG, VALGRIND]) {
        return;
    }
    let (dir, exe) = build_test_program("c-api-valgrind", &[]);
    let selection = match valgrind_part() {
        None => vec!["--quick".to_string()],
        Some((part, parts)) => vec!["--quick-part".to_string(), part.to_string(), parts.to_string()],
    };
    let out = Command::new("valgrind")
        .args(["--error-exitcode=99", "--leak-check=no", "--track-origins=no", "--quiet"])
        .arg(format!("--suppressions={}", repo().join("tests/system/valgrind.supp").display()))
        .arg(&exe)
        .args(&selection)
        .arg(&dir)
        .output()
        .expect("running valgrind");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("valgrind ({}):\n{stdout}", selection.join(" "));
    assert!(out.status.success(), "valgrind found errors ({}):\n{stderr}\n{stdout}", out.status);
    assert!(stdout.contains("quick C API tests passed"), "{stdout}");
}

/// `MINT_VALGRIND_PARTS=N` (CI sets 3): valgrind runs one part of the quick suite, the tests at
/// positions `part` modulo N, `part` being the day (UTC, since the epoch) modulo N, so that N
/// consecutive days' runs cover every test. Unset or 1: the whole quick suite.
fn valgrind_part() -> Option<(u64, u64)> {
    let parts: u64 = std::env::var("MINT_VALGRIND_PARTS").ok()?.parse().expect("MINT_VALGRIND_PARTS: a count");
    if parts <= 1 {
        return None;
    }
    let day = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400;
    Some((day % parts, parts))
}
