//! Reduction cost per sample at IResNet-100 tap sizes (112×112 input), as a ratio to the best
//! bare single-pass max over the same bytes, measured in the same run.
//!
//!     cargo bench --bench reduce
//!
//! The bare scans know nothing of channels: one flat max over each tap's buffer, in the
//! portable form and hand-written with AVX2 / AVX-512 intrinsics; the fastest is the baseline.
//! The library's reduction must find per-channel maxima in NCHW and NHWC (and check for
//! non-finite values) in about that time, with the ISA picked at run time.

#[path = "support/bare.rs"]
mod bare;
#[path = "support/timing.rs"]
mod timing;

use std::hint::black_box;
use std::time::Duration;

use half::{bf16, f16};
use mint_audit::internals::{self as reduce, Isa};
use mint_audit::{Layout, TensorView};

/// (channels, side) of the four IResNet-100 taps.
const TAPS: [(usize, usize); 4] = [(64, 56), (128, 28), (256, 14), (512, 7)];

fn nhwc_of(nchw: &[f32], c: usize, hw: usize) -> Vec<f32> {
    let mut out = vec![0f32; nchw.len()];
    for ch in 0..c {
        for p in 0..hw {
            out[p * c + ch] = nchw[ch * hw + p];
        }
    }
    out
}

fn main() {
    // The first use measures the kernels (src/reduce/tune.rs): what that costs a process once.
    let started = std::time::Instant::now();
    reduce::picks();
    let tuning_ms = started.elapsed().as_secs_f64() * 1e3;
    let trial = Duration::from_millis(40);
    let trials = 15;
    let mut seed = 0x1234_5678u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 * 6.0 - 1.0
    };
    let nchw: Vec<Vec<f32>> = TAPS.iter().map(|&(c, s)| (0..c * s * s).map(|_| next()).collect()).collect();
    let nhwc: Vec<Vec<f32>> = TAPS.iter().zip(&nchw).map(|(&(c, s), m)| nhwc_of(m, c, s * s)).collect();
    let bytes: usize = nchw.iter().map(|m| m.len() * 4).sum();

    // Baselines: a flat max over every tap's bytes (each scan over one slice, run over every
    // tap); the fastest one is what the library is compared with, in alternating trials, and
    // over each tap alone in the tap-by-tap table.
    let scans = bare::scans();
    type Scan<'a> = Box<dyn Fn() + 'a>;
    let bare: Vec<(&str, Scan)> = scans
        .iter()
        .map(|&(name, scan)| {
            let nchw = &nchw;
            let all: Scan = Box::new(move || nchw.iter().for_each(|m| _ = black_box(scan(black_box(m)))));
            (name, all)
        })
        .collect();
    let bare_times: Vec<(&str, f64)> = bare.iter().map(|(n, f)| (*n, timing::ns_per_call(f, trials, trial))).collect();
    let best_index = bare_times.iter().enumerate().min_by(|a, b| a.1 .1.total_cmp(&b.1 .1)).unwrap().0;
    let (best_name, _) = bare_times[best_index];
    let best_fn = &bare[best_index].1;

    fn views(maps: &[Vec<f32>], layout: Layout) -> Vec<TensorView<'_>> {
        TAPS.iter()
            .zip(maps)
            .map(|(&(c, s), m)| match layout {
                Layout::Nchw => TensorView::map(m.as_slice(), layout, [1, c, s, s]).unwrap(),
                Layout::Nhwc => TensorView::map(m.as_slice(), layout, [1, s, s, c]).unwrap(),
            })
            .collect()
    }
    let mut outs: Vec<Vec<f32>> = TAPS.iter().map(|&(c, _)| vec![0f32; c]).collect();
    // (what, baseline ns, library ns, median ratio of alternating trials)
    let mut rows: Vec<(String, f64, f64, f64)> = Vec::new();
    // One sample's taps through one ISA's kernels, against the best bare scan.
    let against_bare = |vs: &[TensorView<'_>], isa: Isa, outs: &mut [Vec<f32>]| {
        timing::paired(
            best_fn,
            || {
                for (v, o) in vs.iter().zip(outs.iter_mut()) {
                    black_box(reduce::channel_max_isa(isa, black_box(v), 0, o, true));
                }
            },
            41,
            trial / 4,
        )
    };
    // The ISA the library measured fastest at start-up for each reduction.
    let pick = |reduction: &str| reduce::picks().into_iter().find(|(r, _)| *r == reduction).unwrap().1;
    for (layout, maps, reduction) in [(Layout::Nchw, &nchw, "planes_f32"), (Layout::Nhwc, &nhwc, "rows_f32")] {
        let vs = views(maps, layout);
        for isa in Isa::available() {
            let (b, t, r) = against_bare(&vs, isa, &mut outs);
            let tag = if isa == pick(reduction) { " (run-time pick)" } else { "" };
            rows.push((format!("{layout:?} f32, {}{tag}", isa.name()), b, t, r));
        }
        // The same without looking for NaN and infinities (capture.check_finite: false).
        let (b, t, r) = timing::paired(
            best_fn,
            || {
                for (v, o) in vs.iter().zip(outs.iter_mut()) {
                    reduce::channel_max_unchecked(black_box(v), 0, o);
                }
            },
            41,
            trial / 4,
        );
        rows.push((format!("{layout:?} f32, {} (run-time pick), check_finite off", pick(reduction).name()), b, t, r));
    }
    // Half precision, as some vendors serve, with every ISA: the baseline widens to f32, the
    // others compare the stored bits (src/reduce/kernels/half_bits.rs).
    let half16: Vec<Vec<f16>> = nchw.iter().map(|m| m.iter().map(|&x| f16::from_f32(x)).collect()).collect();
    let bhalf: Vec<Vec<bf16>> = nhwc.iter().map(|m| m.iter().map(|&x| bf16::from_f32(x)).collect()).collect();
    let v16: Vec<TensorView<'_>> = TAPS
        .iter()
        .zip(&half16)
        .map(|(&(c, s), m)| TensorView::map(m.as_slice(), Layout::Nchw, [1, c, s, s]).unwrap())
        .collect();
    let vb16: Vec<TensorView<'_>> = TAPS
        .iter()
        .zip(&bhalf)
        .map(|(&(c, s), m)| TensorView::map(m.as_slice(), Layout::Nhwc, [1, s, s, c]).unwrap())
        .collect();
    for (name, vs, reduction) in [("Nchw f16", &v16, "planes_f16"), ("Nhwc bf16", &vb16, "rows_bf16")] {
        for isa in Isa::available() {
            let (b, t, r) = against_bare(vs, isa, &mut outs);
            let tag = if isa == pick(reduction) { "run-time pick; " } else { "" };
            rows.push((format!("{name}, {} ({tag}half the bytes)", isa.name()), b, t, r));
        }
    }

    // Tap by tap, what the gap to the bare scan is made of: the same bare scan over one tap's
    // bytes against the run-time pick on that tap, with the check on and off.
    let bare_one = scans[best_index].1;
    let mut by_tap = String::new();
    for (layout, maps) in [(Layout::Nchw, &nchw), (Layout::Nhwc, &nhwc)] {
        let vs = views(maps, layout);
        for (i, (&(c, side), v)) in TAPS.iter().zip(&vs).enumerate() {
            let m = &maps[i];
            let base = || _ = black_box(bare_one(black_box(m)));
            let out = &mut outs[i];
            let (b, _, checked) =
                timing::paired(base, || _ = black_box(reduce::channel_max(black_box(v), 0, out)), 41, trial / 8);
            let out = &mut outs[i];
            let (_, _, unchecked) =
                timing::paired(base, || reduce::channel_max_unchecked(black_box(v), 0, out), 41, trial / 8);
            by_tap.push_str(&format!(
                "| {layout:?} | {c}×{side}×{side} | {side}² = {} | {:.2} | {:.2} | {:.2} |\n",
                side * side,
                b / 1e3,
                checked,
                unchecked
            ));
        }
    }

    let mut text = format!(
        "### Reduce: per-channel max of one sample's four IResNet-100 taps ({:.2} MB f32)\n\n\
         CPU: {} ({} logical CPUs); flags: {}; ISAs available: {}; best: {}; \
         run-time picks (measured at start-up, in {:.1} ms): {}; the other ISA's kernel took \
         (× the best ISA's) {}.\n\n\
         Library rows: median over 41 alternating trials against the best bare scan \
         (the ratio is the median of the per-pair ratios).\n\n\
         | what | µs / sample | f32-equivalent GB/s | × best bare scan |\n|---|---:|---:|---:|\n",
        bytes as f64 / 1e6,
        timing::cpu_name(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        timing::cpu_flags(),
        Isa::available().iter().map(|i| i.name()).collect::<Vec<_>>().join(", "),
        reduce::isa().name(),
        tuning_ms,
        reduce::picks().iter().map(|(r, i)| format!("{r} {}", i.name())).collect::<Vec<_>>().join(", "),
        reduce::pick_ratios().iter().map(|(r, x)| format!("{r} {x:.2}")).collect::<Vec<_>>().join(", ")
    );
    let best = bare_times[best_index].1;
    for (name, t) in &bare_times {
        let mark = if *name == best_name { " (baseline)" } else { "" };
        text.push_str(&format!(
            "| bare flat max, {name}{mark} | {:.1} | {:.0} | {:.2} |\n",
            t / 1e3,
            bytes as f64 / t,
            t / best
        ));
    }
    for (name, _, t, ratio) in &rows {
        text.push_str(&format!("| mint-audit {name} | {:.1} | {:.0} | {:.2} |\n", t / 1e3, bytes as f64 / t, ratio));
    }
    text.push_str(&format!(
        "\n#### Tap by tap (run-time picks; median ratios of 41 alternating trials)\n\n\
         | layout | tap | elements per channel | bare scan µs | × bare scan | × bare scan, check_finite off |\n\
         |---|---|---:|---:|---:|---:|\n{by_tap}"
    ));
    timing::write_result("reduce", &text);
}
