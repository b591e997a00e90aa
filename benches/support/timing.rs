//! Timing helpers shared by the bench binaries (included with `#[path]`).
//!
//! Each figure is the median over trials of the mean time per call within a trial, so one
//! noisy trial (another process, a frequency change) moves it little; comparisons are made
//! as ratios between figures taken in the same run.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Median nanoseconds per call of `f`, over `trials` trials of about `trial` each.
pub fn ns_per_call(mut f: impl FnMut(), trials: usize, trial: Duration) -> f64 {
    // Warm up, and size a trial.
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < trial / 2 || calls < 3 {
        f();
        calls += 1;
    }
    let per_trial = ((calls as f64 * 2.0).max(3.0)) as u64;
    let mut samples: Vec<f64> = (0..trials)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_trial {
                f();
            }
            t.elapsed().as_nanos() as f64 / per_trial as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Where a bench writes its markdown table (besides stdout).
pub fn write_result(name: &str, text: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.md")), text).unwrap();
    println!("{text}");
    eprintln!("(written to target/bench-results/{name}.md)");
}

/// The CPU, as the kernel names it.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Times `baseline` and `candidate` in alternating trials of about `trial` each and returns the
/// median ns per call of each and the median of the per-pair ratios candidate / baseline.
/// Alternating makes slow drifts (a neighbour's load, the clock) hit both sides alike.
pub fn paired(
    mut baseline: impl FnMut(),
    mut candidate: impl FnMut(),
    pairs: usize,
    trial: Duration,
) -> (f64, f64, f64) {
    let calls = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < trial || n < 3 {
            f();
            n += 1;
        }
        n
    };
    let nb = calls(&mut baseline);
    let nc = calls(&mut candidate);
    let time = |f: &mut dyn FnMut(), n: u64| {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_nanos() as f64 / n as f64
    };
    let (mut b, mut c, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..pairs {
        let tb = time(&mut baseline, nb);
        let tc = time(&mut candidate, nc);
        b.push(tb);
        c.push(tc);
        r.push(tc / tb);
    }
    for v in [&mut b, &mut c, &mut r] {
        v.sort_by(f64::total_cmp);
    }
    (b[pairs / 2], c[pairs / 2], r[pairs / 2])
}

/// The CPU's vector extensions that matter to the kernels here, from /proc/cpuinfo.
pub fn cpu_flags() -> String {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> =
        text.lines().find(|l| l.starts_with("flags")).map(|l| l.split_whitespace().collect()).unwrap_or_default();
    let wanted = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_fp16"];
    let have: Vec<&str> = wanted.iter().copied().filter(|w| flags.contains(w)).collect();
    if have.is_empty() {
        "none of avx2/avx512".into()
    } else {
        have.join(" ")
    }
}
