//! Memory after bursts on the CNN path, in a test binary of its own: resident memory is a
//! property of the whole process, which other tests running beside it would change.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use mint_audit::{Auditor, Config};
use serde_json::json;

/// The C test plugin, compiled once.
fn c_plugin(name: &str) -> PathBuf {
    let dir = scratch(&format!("plugin-{name}"));
    let lib = dir.join(format!("libtest_{name}.so"));
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args(["-std=c11", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-O1"])
        .arg(format!("-I{}", repo().join("include").display()))
        .arg(repo().join("tests/system/c/test_plugin.c"))
        .arg("-o")
        .arg(&lib);
    run(&mut cmd);
    lib
}

fn cnn_config(library: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> Config {
    let mut c = shipped_config();
    c.as_object_mut().unwrap().remove("metrics");
    c["head"] = json!({"kind": "cnn", "tap": "stage1", "backend": {"library": library, "config": {"mode": "echo"}}});
    edit(&mut c);
    Config::from_json(&c.to_string(), &repo().join("models/fmnist-memorizing")).unwrap()
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
}

/// Threads submitting at once.
const THREADS: u64 = 8;
/// One batch's copy of full maps: 64 samples of 16×28×28 f32.
const BATCH_COPY: u64 = 64 * 16 * 28 * 28 * 4;
/// What the process keeps beyond twice the copy budget: the auditor itself (plan, threads,
/// tables: ~10 MiB, 16 allowed) and, per submitting thread, up to four batch copies that the
/// allocator's arena for that thread keeps for reuse (glibc raises its mmap threshold after
/// large frees, so later copies come from the arenas, which are not returned to the system).
const SLACK: u64 = (16 << 20) + THREADS * 4 * BATCH_COPY;

/// Bursts from eight threads (one process-wide budget) leave resident memory within twice the
/// copy budget and [`SLACK`], measured from before the auditor was created.
#[test]
fn memory_stays_within_the_copy_budget_after_bursts() {
    if !ready("the C plugin tests", &[CC]) {
        return;
    }
    let lib = c_plugin("echo-memory");
    let budget = 16usize << 20;
    let config = cnn_config(&lib, |c| {
        c["head"]["copy_budget_bytes"] = json!(budget);
        c["queue"] = json!({"capacity": 100000});
    });
    let start = resident_bytes();
    let auditor = Auditor::new(config).unwrap();
    let rest = synthetic_reduced(64, 9);
    let maps = vec![0.25f32; 64 * 16 * 28 * 28];
    let warm = |k: u64| {
        let n = [1usize, 8, 64, 33, 5, 64, 2, 48][k as usize % 8];
        let ids: Vec<u64> = (0..n as u64).map(|i| k * 64 + i).collect();
        let _ = auditor.submit(&ids, &borrowed_taps(&maps[..n * 16 * 28 * 28], &rest, n));
    };
    for k in 0..50 {
        warm(k);
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = resident_bytes();
    // Eight threads at once, as serving code submits: the allocator's arenas multiply.
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let warm = &warm;
            scope.spawn(move || {
                for k in 0..1000 / THREADS {
                    warm(50 + t * (1000 / THREADS) + k);
                }
            });
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let grown = resident_bytes().saturating_sub(before);
    let retained = resident_bytes().saturating_sub(start);
    eprintln!(
        "resident: +{} MiB after warm-up, +{} MiB after the bursts, from the auditor's creation",
        (before - start) >> 20,
        retained >> 20
    );
    // Copies in flight are bounded by the budget, recycled buffers by a quarter of it; the
    // allocator's per-thread arenas and the auditor itself (its plan, threads and tables) are
    // the constant (docs/design.md, "Memory on the CNN path").
    assert!(grown < (budget as u64) * 2 + SLACK, "resident memory grew by {grown} bytes over the bursts");
    assert!(retained < (budget as u64) * 2 + SLACK, "resident memory is {retained} bytes above the auditor's creation");
    let s = auditor.close(Duration::from_secs(10)).stats;
    assert_eq!(s.submitted, s.audited() + s.dropped_total());
    assert!(s.audited() > 0);
}
