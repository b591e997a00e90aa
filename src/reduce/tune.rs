//! Which instruction set's kernel each reduction runs, chosen by measurement at start-up.
//!
//! "The best ISA the CPU has" is not always the fastest kernel: on the AVX-512 EPYC of
//! docs/benchmarks.md the AVX2 kernel reduces NCHW f32 maps faster than the AVX-512 one (the
//! core runs 512-bit operations as two halves, and small planes waste more of a wide
//! register), while NHWC and half-precision maps go the other way. So, once per process, each
//! reduction (planes and rows, for each element type) is timed with every kernel set above the
//! baseline on synthetic maps of mixed plane sizes, in alternating rounds, and the fastest is
//! kept. The best ISA's kernel stays unless another is at least `MARGIN` faster, so that noise
//! on a busy host cannot flip a choice for nothing. About 8 ms on the machine of
//! docs/benchmarks.md, once, at the first use (an `Auditor`'s creation, which reports the ISA).

use std::hint::black_box;
use std::time::Instant;

use half::{bf16, f16};

use super::kernels;
use super::table::{Isa, Kernels, PlanesFn, RowsFn};

/// How much faster (as a ratio of times) another ISA's kernel must be to be chosen.
const MARGIN: f64 = 0.97;
/// Alternating rounds per reduction; the median round decides.
const ROUNDS: usize = 15;
/// Maps of one synthetic sample: (channels, pixels per plane), the four stages of a ResNet at
/// 112² (1.5 MB of f32), so plane sizes from 3,136 down to 49 and rows of 64 to 512 channels.
/// Smaller stand-ins misled: with 16 channels a row fits one AVX-512 register and the AVX2
/// kernel looked faster for NHWC than it is on real taps.
const MAPS: [(usize, usize); 4] = [(64, 56 * 56), (128, 28 * 28), (256, 14 * 14), (512, 7 * 7)];
const WIDEST: usize = 512;

/// The reductions, in report order.
const REDUCTIONS: [&str; 6] = ["planes_f32", "rows_f32", "planes_f16", "rows_f16", "planes_bf16", "rows_bf16"];

/// The ISA of each reduction's kernel, and what the measurement found.
#[derive(Clone, Copy, Debug)]
pub struct Picks {
    isas: [Isa; 6],
    /// Per reduction, the other ISA's time over the best ISA's (median of the rounds); NaN
    /// where nothing was measured.
    ratios: [f64; 6],
}

impl Picks {
    fn all(isa: Isa) -> Picks {
        Picks { isas: [isa; 6], ratios: [f64::NAN; 6] }
    }

    /// `(reduction, ISA)` pairs for reports.
    pub fn list(&self) -> [(&'static str, Isa); 6] {
        std::array::from_fn(|i| (REDUCTIONS[i], self.isas[i]))
    }

    /// `(reduction, the other ISA's time over the best ISA's)` as measured.
    pub fn ratios(&self) -> [(&'static str, f64); 6] {
        std::array::from_fn(|i| (REDUCTIONS[i], self.ratios[i]))
    }
}

/// The kernels of the best ISA, with each reduction replaced by the fastest measured; and
/// what was picked. Debug builds are not measured (unoptimised kernels would time nothing
/// real, and slowly): they keep the best ISA's kernels.
pub(crate) fn tuned() -> (Kernels, Picks) {
    if cfg!(debug_assertions) {
        let best = kernels::for_isa(Isa::best()).expect("the best ISA is available");
        return (best, Picks::all(best.isa));
    }
    measured()
}

/// [`tuned`]'s measurement, in any build.
pub(crate) fn measured() -> (Kernels, Picks) {
    let best = kernels::for_isa(Isa::best()).expect("the best ISA is available");
    let mut picks = Picks::all(best.isa);
    // The baseline is never the fastest where a vector ISA exists; it is not timed. Of the
    // ISAs x86-64 has, that leaves at most one other than the best: AVX2 beside AVX-512.
    let other = Isa::available().into_iter().rev().find(|&i| i != Isa::Baseline && i != best.isa);
    let (Some(other), false) = (other.and_then(kernels::for_isa), best.isa == Isa::Baseline) else {
        return (best, picks);
    };
    let values: Vec<f32> =
        (0..MAPS.iter().map(|(c, hw)| c * hw).sum::<usize>()).map(|i| ((i * 7919) % 1000) as f32 / 999.0).collect();
    let halves: Vec<f16> = values.iter().map(|&x| f16::from_f32(x)).collect();
    let bhalves: Vec<bf16> = values.iter().map(|&x| bf16::from_f32(x)).collect();
    picks.ratios = [
        planes_ratio(other.planes_f32, best.planes_f32, &values),
        rows_ratio(other.rows_f32, best.rows_f32, &values),
        planes_ratio(other.planes_f16, best.planes_f16, &halves),
        rows_ratio(other.rows_f16, best.rows_f16, &halves),
        planes_ratio(other.planes_bf16, best.planes_bf16, &bhalves),
        rows_ratio(other.rows_bf16, best.rows_bf16, &bhalves),
    ];
    let mut k = best;
    for (i, &ratio) in picks.ratios.iter().enumerate() {
        if ratio >= MARGIN {
            continue;
        }
        picks.isas[i] = other.isa;
        match i {
            0 => k.planes_f32 = other.planes_f32,
            1 => k.rows_f32 = other.rows_f32,
            2 => k.planes_f16 = other.planes_f16,
            3 => k.rows_f16 = other.rows_f16,
            4 => k.planes_bf16 = other.planes_bf16,
            _ => k.rows_bf16 = other.rows_bf16,
        }
    }
    (k, picks)
}

/// `candidate`'s time over `kept`'s to reduce the synthetic sample's planes.
fn planes_ratio<T>(candidate: PlanesFn<T>, kept: PlanesFn<T>, values: &[T]) -> f64 {
    let (mut one, mut other) = ([0f32; WIDEST], [0f32; WIDEST]);
    let sample = |f: PlanesFn<T>, acc: &mut [f32; WIDEST]| {
        let mut start = 0;
        for &(c, hw) in &MAPS {
            black_box(f(black_box(&values[start..start + c * hw]), hw, &mut acc[..c], true));
            start += c * hw;
        }
    };
    ratio(|| sample(candidate, &mut one), || sample(kept, &mut other))
}

/// As [`planes_ratio`], for channels-last rows.
fn rows_ratio<T>(candidate: RowsFn<T>, kept: RowsFn<T>, values: &[T]) -> f64 {
    let (mut one, mut other) = ([0f32; WIDEST], [0f32; WIDEST]);
    let sample = |f: RowsFn<T>, acc: &mut [f32; WIDEST]| {
        let mut start = 0;
        for &(c, hw) in &MAPS {
            black_box(f(black_box(&values[start..start + c * hw]), &mut acc[..c], true));
            start += c * hw;
        }
    };
    ratio(|| sample(candidate, &mut one), || sample(kept, &mut other))
}

/// Times `a` and `b` in alternating rounds (after one warm-up each): the median of the
/// per-round ratios a/b.
fn ratio(mut a: impl FnMut(), mut b: impl FnMut()) -> f64 {
    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..2 {
            f();
        }
        started.elapsed().as_secs_f64()
    };
    time(&mut a);
    time(&mut b);
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            // Alternate which goes first, so that neither always runs on a warmer cache.
            if round % 2 == 0 {
                let ta = time(&mut a);
                ta / time(&mut b)
            } else {
                let tb = time(&mut b);
                time(&mut a) / tb
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ROUNDS / 2]
}
