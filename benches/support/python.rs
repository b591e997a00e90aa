//! The Python side of the bench binaries that compare against onnxruntime (included with
//! `#[path]`): which interpreter, running a script that prints JSON, and the realistic models
//! of `research/mint_research/make_overhead_models.py`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The interpreter with onnxruntime: $MINT_BENCH_PYTHON, else the repository's .venv.
pub fn python() -> Option<PathBuf> {
    let from_env = std::env::var_os("MINT_BENCH_PYTHON").map(PathBuf::from);
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    from_env.or_else(|| venv.exists().then_some(venv))
}

/// Runs `script` (under benches/) with `args` on `py` and parses the JSON it prints; `None`,
/// after saying why, when it fails.
pub fn json_of(py: &Path, script: &str, args: &[String]) -> Option<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join(script);
    let out = Command::new(py).arg(path).args(args).output().ok()?;
    if !out.status.success() {
        eprintln!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// target/overhead-models with `models` in it, made by the script on first use.
pub fn overhead_models(models: &[&str]) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = repo.join("target/overhead-models");
    if !models.iter().all(|m| dir.join(m).join("auditor.json").is_file()) {
        let ok = Command::new("/usr/bin/python3")
            .arg(repo.join("research/mint_research/make_overhead_models.py"))
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "research/mint_research/make_overhead_models.py failed (Debian's python3-torch and python3-onnx are needed)");
    }
    dir
}
