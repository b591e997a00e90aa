//! The C API from Python through ctypes (examples/python/mint_ctypes.py), against the installed
//! library and the shipped configuration.

mod common;

use std::process::Command;

use common::*;

#[test]
fn python_drives_the_c_api_through_ctypes() {
    if !ready("the Python test", &[CC, PKG_CONFIG, NUMPY]) {
        return;
    }
    let lib = installed_prefix().join("lib/libmint_audit.so");
    let dir = scratch("python");
    let mut config = shipped_config();
    config.as_object_mut().unwrap().remove("metrics");
    let config_path = dir.join("auditor.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = run(Command::new("/usr/bin/python3")
        .arg(repo().join("examples/python/mint_ctypes.py"))
        .arg(&lib)
        .arg(&config_path));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("submitted 256 = audited 256 + dropped 0; 256 results reached the callback"), "{stdout}");
    assert!(stdout.contains("mint_samples_submitted_total{cohort=\"default\"} 256"), "{stdout}");
}
