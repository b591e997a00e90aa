//! A language model's label-free membership features, from the log-probabilities of the
//! actual tokens over each sample's valid tokens: the mean (minus the loss), Min-K% Prob (the
//! mean of the lowest k of them; Shi et al. 2024), Min-K%++ (the same on log-probabilities
//! standardised by the mean and standard deviation of the model's next-token distribution at
//! each position; Zhang et al. 2025) and order statistics.
//!
//! A sample's T values are gathered and sorted in a per-thread scratch buffer that keeps its
//! size, so the vendor's thread allocates only while its longest sequence grows.

use std::cell::RefCell;

use super::logits::token_scores;
use super::scalar::{all_finite, element};
use super::tokens::valid_tokens;
use crate::config::LmFeature;
use crate::tensor::TensorView;

thread_local! {
    /// Log-probabilities and standardised log-probabilities of one sample.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Writes sample `n`'s features into `out` (one per feature) from a `[N, C, T]` view of C = 1
/// (log p of each token) or C = 3 (with the mean and standard deviation of log p at each
/// position), or from a view of logits with their token ids (`token_logits`, scored by
/// [`super::logits`]). Returns `false` when a feature is not finite (a NaN or infinite value
/// among the valid tokens).
pub(crate) fn lm_features(view: &TensorView<'_>, n: usize, features: &[LmFeature], out: &mut [f32]) -> bool {
    assert_eq!(out.len(), features.len(), "one output per feature");
    let standardised = features.iter().any(|f| matches!(f, LmFeature::MinKpp(_)));
    SCRATCH.with_borrow_mut(|(lp, z)| {
        lp.clear();
        z.clear();
        if view.targets().is_some() {
            token_scores(view, n, lp, standardised.then_some(z));
        } else {
            given_scores(view, n, lp, z);
        }
        lp.sort_unstable_by(f32::total_cmp);
        z.sort_unstable_by(f32::total_cmp);
        for (o, f) in out.iter_mut().zip(features) {
            *o = match *f {
                LmFeature::Mean => mean(lp),
                LmFeature::MinK(k) => mean(&lp[..lowest(lp.len(), k)]),
                LmFeature::MinKpp(k) => mean(&z[..lowest(z.len(), k)]),
                LmFeature::Quantile(q) => lp[((lp.len() - 1) as f32 * q).round() as usize],
            };
        }
    });
    all_finite(out)
}

/// Token scores as the vendor gave them: log p of each valid token, and with C = 3 its
/// standardisation by the mean and standard deviation beside it.
fn given_scores(view: &TensorView<'_>, n: usize, lp: &mut Vec<f32>, z: &mut Vec<f32>) {
    let (sc, st) = (view.strides()[1], view.strides()[2]);
    let base = view.sample_offset(n);
    let e = view.elements();
    let standardised = view.channels() == 3;
    for tok in valid_tokens(view, n) {
        let at = base + tok * st;
        let x = element(e, at);
        lp.push(x);
        if standardised {
            let (mu, sigma) = (element(e, at + sc), element(e, at + 2 * sc));
            // A position where the model is certain has no spread: its token is typical.
            z.push(if sigma > 0.0 { (x - mu) / sigma } else { 0.0 });
        }
    }
}

/// How many of `len` sorted values the lowest fraction `k` takes: ⌈k·len⌉, at least one.
///
/// The published code of Min-K% and Min-K%++ takes ⌊k·len⌋ (and has no value when that is
/// 0): the two agree when k·len is a whole number, and this one takes one token more
/// otherwise (docs/design.md, "Min-K%: which tokens"). `k` is read to six decimals and the
/// count computed in integers: in f32, 0.3 × 50 is 15.000001, whose ceiling took a 16th token.
fn lowest(len: usize, k: f32) -> usize {
    const SCALE: u64 = 1_000_000;
    let millionths = (f64::from(k) * SCALE as f64).round() as u64; // k in (0, 1]: at most SCALE
    let count = (len as u64 * millionths).div_ceil(SCALE);
    (count as usize).clamp(1, len)
}

fn mean(values: &[f32]) -> f32 {
    (values.iter().map(|&x| x as f64).sum::<f64>() / values.len() as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::SeqLayout;

    #[test]
    fn features_are_computed_over_valid_tokens_only() {
        // Two samples of 6 positions, C = 3 in [N, T, C]: (log p, mu, sigma).
        let rows = [
            [
                (-1.0, -2.0, 1.0),
                (-3.0, -2.0, 2.0),
                (-0.5, -1.0, 0.5),
                (-4.0, -3.0, 1.0),
                (-2.0, -2.0, 0.0),
                (9.0, 9.0, 9.0),
            ],
            [
                (-0.1, -1.0, 1.0),
                (-0.2, -1.0, 1.0),
                (f32::NAN, 0.0, 1.0),
                (-0.3, -0.3, 1.0),
                (-0.4, -0.2, 2.0),
                (-0.5, -1.5, 1.0),
            ],
        ];
        let data: Vec<f32> = rows.iter().flatten().flat_map(|&(a, b, c)| [a, b, c]).collect();
        let lengths = [5i64, 2];
        let v = TensorView::sequence(data.as_slice(), SeqLayout::Ntc, [2, 6, 3]).unwrap().with_lengths(&lengths);
        let features = [
            LmFeature::Mean,
            LmFeature::MinK(0.2),
            LmFeature::MinK(0.4),
            LmFeature::MinKpp(0.4),
            LmFeature::Quantile(0.0),
            LmFeature::Quantile(0.5),
            LmFeature::Quantile(1.0),
        ];
        let mut out = [0f32; 7];
        assert!(lm_features(&v, 0, &features, &mut out));
        // log p: -1 -3 -0.5 -4 -2 (sorted: -4 -3 -2 -1 -0.5); z: 1 -0.5 1 -1 0 (sorted: -1 -0.5 0 1 1).
        assert_eq!(out, [-2.1, -4.0, -3.5, -0.75, -4.0, -2.0, -0.5]);
        assert!(lm_features(&v, 1, &features, &mut out));
        // Sample 1 has two valid tokens; its NaN at position 2 is padding.
        assert_eq!(out[0], -0.15);
        assert_eq!(out[1], -0.2);
        let mask = [1u8, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0];
        let v = TensorView::sequence(data.as_slice(), SeqLayout::Ntc, [2, 6, 3]).unwrap().with_mask(&mask);
        assert!(!lm_features(&v, 1, &features, &mut out), "a NaN log-probability among the valid tokens");
        assert!(lm_features(&v, 0, &features, &mut out));
        assert_eq!(out[0], -2.1);
    }

    #[test]
    fn the_lowest_fraction_is_counted_exactly() {
        // k·len whole: exactly k·len tokens, the published code's count too (f32 arithmetic
        // took 16 of 50 at k = 0.3, 31 of 100).
        for (len, k, count) in [(50, 0.3, 15), (100, 0.3, 30), (90, 0.3, 27), (20, 0.05, 1), (10, 0.5, 5), (7, 1.0, 7)]
        {
            assert_eq!(lowest(len, k), count, "{k} of {len}");
        }
        // Otherwise one more than the published ⌊k·len⌋, and at least one.
        for (len, k, count) in [(51, 0.3, 16), (7, 0.2, 2), (3, 0.05, 1), (1, 0.05, 1), (19, 0.1, 2)] {
            assert_eq!(lowest(len, k), count, "{k} of {len}");
        }
        // Against the exact fractions, every length up to 4096.
        for (k, num, den) in [(0.05f32, 1, 20), (0.1, 1, 10), (0.2, 1, 5), (0.3, 3, 10), (0.5, 1, 2), (0.25, 1, 4)] {
            for len in 1..=4096usize {
                assert_eq!(lowest(len, k), (len * num).div_ceil(den).max(1), "{k} of {len}");
            }
        }
    }
}
