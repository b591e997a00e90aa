//! Synthetic feature rows for the tests: standard normal features, members shifted on the
//! first two.

use crate::roc::SplitMix;

/// Rows of `d` features; members shifted by `shift` on the first two, the rest noise.
pub(super) fn rows(n: usize, d: usize, shift: f64, rng: &mut SplitMix) -> Vec<Vec<f64>> {
    let normal = |rng: &mut SplitMix| {
        // Box–Muller from two uniforms in (0, 1].
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 + f64::EPSILON;
        let v = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    (0..n).map(|_| (0..d).map(|j| normal(rng) + if j < 2 { shift } else { 0.0 }).collect()).collect()
}

pub(super) fn names(d: usize) -> Vec<String> {
    (0..d).map(|j| format!("f{j}")).collect()
}
