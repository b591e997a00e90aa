//! A causal language model's token scores computed from its logits `[N, T, V]` and the token
//! ids it read `[N, T]`: at each position t whose successor t + 1 also counts, the
//! log-probability of token t + 1 under the next-token distribution at t, and that
//! distribution's mean and standard deviation of log-probabilities (what Min-K%++
//! standardises by). The same three values `mint_audit.torch.token_scores` computes where the
//! logits are, so that a vendor without PyTorch (C, C++) gets the language-model features.
//!
//! Cost: two passes over the V logits of each scored position of each audited sample, one
//! `exp` per logit; the tap's element limit bounds it (T × V per sample).

use std::cell::RefCell;

use super::convert::copy_to_f32;
use super::scalar::element;
use super::tokens::valid_tokens;
use crate::error::{Error, Result};
use crate::tensor::TensorView;

thread_local! {
    /// One position's logits, widened to f32.
    static ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The scored positions of sample `n`: pairs (t, t + 1) of valid tokens, as t.
fn scored<'a>(view: &TensorView<'a>, n: usize) -> impl Iterator<Item = usize> + 'a {
    let mut valid = valid_tokens(view, n).peekable();
    std::iter::from_fn(move || loop {
        let t = valid.next()?;
        if valid.peek() == Some(&(t + 1)) {
            return Some(t);
        }
    })
}

/// Checks a view of logits against its token ids: `N × T` ids, each scored one in `0..V`,
/// and at least one scored position per sample. Reads the ids and the token selection, which
/// [`super::check_tokens`] has vouched for (never the logits).
pub(crate) fn check_targets(view: &TensorView<'_>) -> Result<()> {
    let (n, t, v) = (view.batch(), view.spatial(), view.channels());
    let Some(ids) = view.targets() else {
        return Err(Error::InvalidInput(
            "logits need the token ids the model read ([N, T]), to score each token on the logits before it".into(),
        ));
    };
    if Some(ids.len()) != n.checked_mul(t) {
        return Err(Error::InvalidInput(format!(
            "{} token ids were given for {n} samples of {t} positions",
            ids.len()
        )));
    }
    for i in 0..n {
        let row = &ids[i * t..(i + 1) * t];
        let mut any = false;
        for at in scored(view, i) {
            let id = row[at + 1];
            if id < 0 || id as u64 >= v as u64 {
                return Err(Error::InvalidInput(format!(
                    "sample {i} has token id {id} at position {}; ids are in 0..{v} (the logits' vocabulary)",
                    at + 1
                )));
            }
            any = true;
        }
        if !any {
            return Err(Error::InvalidInput(format!(
                "sample {i} has no two consecutive valid tokens: no token follows a position to be scored"
            )));
        }
    }
    Ok(())
}

/// Appends sample `n`'s token scores to `lp` (log p of each scored token) and, with `z`,
/// their standardisation `(log p - mean) / std` under each position's distribution (0 where
/// the model is certain). Non-finite logits give non-finite scores.
pub(crate) fn token_scores(view: &TensorView<'_>, n: usize, lp: &mut Vec<f32>, mut z: Option<&mut Vec<f32>>) {
    let ids = view.targets().expect("check_targets vouched for the ids");
    let (t, v) = (view.spatial(), view.channels());
    let (sc, st) = (view.strides()[1], view.strides()[2]);
    let base = view.sample_offset(n);
    let e = view.elements();
    ROW.with_borrow_mut(|row| {
        row.reserve(v);
        for at in scored(view, n) {
            let start = base + at * st;
            row.clear();
            if sc == 1 {
                copy_to_f32(e, start, &mut row.spare_capacity_mut()[..v]);
                // SAFETY: copy_to_f32 writes each of the v elements (capacity reserved above).
                unsafe { row.set_len(v) };
            } else {
                row.extend((0..v).map(|c| element(e, start + c * sc)));
            }
            let target = row[ids[n * t + at + 1] as usize];
            let (log_p, mean, std) = scores(row, target);
            lp.push(log_p);
            if let Some(z) = z.as_deref_mut() {
                z.push(if std > 0.0 { (log_p - mean) / std } else { 0.0 });
            }
        }
    });
}

/// (log p of `target`, mean and standard deviation of log p) under the softmax of `logits`.
fn scores(logits: &[f32], target: f32) -> (f32, f32, f32) {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !top.is_finite() || !target.is_finite() {
        return (f32::NAN, f32::NAN, f32::NAN);
    }
    // With d = x - top and e = exp(d): log p = d - ln Σe; the moments of log p under p are
    // those of d shifted by ln Σe, so the variance needs only Σe·d and Σe·d².
    let (mut sum, mut sum_d, mut sum_d2, mut nan) = (0f64, 0f64, 0f64, false);
    for &x in logits {
        let d = x - top;
        let p = d.exp();
        // -inf logits (a masked vocabulary) carry no probability and add nothing.
        if p > 0.0 {
            let (p, d) = (p as f64, d as f64);
            sum += p;
            sum_d += p * d;
            sum_d2 += p * d * d;
        } else {
            nan |= p.is_nan();
        }
    }
    if nan {
        return (f32::NAN, f32::NAN, f32::NAN);
    }
    let log_sum = sum.ln();
    let (m1, m2) = (sum_d / sum, sum_d2 / sum);
    let log_p = (target - top) as f64 - log_sum;
    (log_p as f32, (m1 - log_sum) as f32, (m2 - m1 * m1).max(0.0).sqrt() as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::SeqLayout;

    /// log-softmax in f64, the reference.
    fn reference(logits: &[f32], target: usize) -> (f64, f64, f64) {
        let top = logits.iter().map(|&x| x as f64).fold(f64::NEG_INFINITY, f64::max);
        let lse = top + logits.iter().map(|&x| (x as f64 - top).exp()).sum::<f64>().ln();
        let lp: Vec<f64> = logits.iter().map(|&x| x as f64 - lse).collect();
        let mean: f64 = lp.iter().map(|&l| l.exp() * l).sum();
        let var: f64 = lp.iter().map(|&l| l.exp() * (l - mean) * (l - mean)).sum();
        (lp[target], mean, var.sqrt())
    }

    #[test]
    fn scores_match_a_float64_log_softmax() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.21).collect();
        for target in [0, 17, 999] {
            let (lp, mean, std) = scores(&logits, logits[target]);
            let (rl, rm, rs) = reference(&logits, target);
            assert!((lp as f64 - rl).abs() < 1e-4, "{lp} {rl}");
            assert!((mean as f64 - rm).abs() < 1e-4, "{mean} {rm}");
            assert!((std as f64 - rs).abs() < 1e-4, "{std} {rs}");
        }
        // A vocabulary masked to -inf is no probability, not a NaN.
        let masked = [0.0, f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY];
        let (lp, _, std) = scores(&masked, 1.0);
        assert!((lp as f64 - (1.0 - (1f64 + 1f64.exp()).ln())).abs() < 1e-6 && std > 0.0);
        assert!(scores(&masked, f32::NEG_INFINITY).0.is_nan(), "a token of no probability is no finite score");
        assert!(scores(&[0.0, f32::NAN], 0.0).0.is_nan());
        // A certain model: all mass on one token, no spread.
        let (lp, _, std) = scores(&[0.0, -200.0, -200.0], 0.0);
        assert!(lp.abs() < 1e-6 && std < 1e-3);
    }

    #[test]
    fn positions_are_scored_on_the_next_valid_token() {
        // Two samples of 4 positions over a vocabulary of 3, [N, T, V].
        let logits: Vec<f32> = (0..24).map(|i| (i % 5) as f32 * 0.5).collect();
        let ids = [0i64, 2, 1, 0, /* sample 1 */ 7, 1, 2, 9];
        let mask = [1u8, 1, 1, 0, /* sample 1 */ 0, 1, 1, 0];
        let view = TensorView::sequence(logits.as_slice(), SeqLayout::Ntc, [2, 4, 3])
            .unwrap()
            .with_mask(&mask)
            .with_targets(&ids);
        check_targets(&view).unwrap();
        let (mut lp, mut z) = (Vec::new(), Vec::new());
        token_scores(&view, 0, &mut lp, Some(&mut z));
        // Positions 0 and 1 are scored on ids 2 and 1; position 2's successor is padding.
        let row = |n: usize, t: usize| &logits[(n * 4 + t) * 3..(n * 4 + t + 1) * 3];
        let expected = [reference(row(0, 0), 2).0, reference(row(0, 1), 1).0];
        assert_eq!(lp.len(), 2);
        for (got, want) in lp.iter().zip(expected) {
            assert!((*got as f64 - want).abs() < 1e-6);
        }
        lp.clear();
        token_scores(&view, 1, &mut lp, None);
        assert_eq!(lp.len(), 1);
        assert!((lp[0] as f64 - reference(row(1, 1), 2).0).abs() < 1e-6, "ids outside the scored pairs are not read");
        // Out of the vocabulary where scored; none scored; too few ids.
        let bad = [0i64, 3, 1, 0, 7, 1, 2, 9];
        let e = check_targets(&view.with_targets(&bad)).unwrap_err().to_string();
        assert!(e.contains("sample 0 has token id 3 at position 1"), "{e}");
        let lonely = [1u8, 0, 1, 0, 0, 1, 1, 0];
        let e = check_targets(&view.with_mask(&lonely)).unwrap_err().to_string();
        assert!(e.contains("sample 0 has no two consecutive valid tokens"), "{e}");
        let e = check_targets(&view.with_targets(&ids[..7])).unwrap_err().to_string();
        assert!(e.contains("7 token ids were given for 2 samples of 4 positions"), "{e}");
        // The same logits in [N, V, T] order give the same scores.
        let mut nct = vec![0f32; 24];
        for n in 0..2 {
            for t in 0..4 {
                for c in 0..3 {
                    nct[n * 12 + c * 4 + t] = logits[n * 12 + t * 3 + c];
                }
            }
        }
        let v2 = TensorView::sequence(nct.as_slice(), SeqLayout::Nct, [2, 3, 4])
            .unwrap()
            .with_mask(&mask)
            .with_targets(&ids);
        let (mut lp2, mut z2) = (Vec::new(), Vec::new());
        token_scores(&v2, 0, &mut lp2, Some(&mut z2));
        let (mut lp1, mut z1) = (Vec::new(), Vec::new());
        token_scores(&view, 0, &mut lp1, Some(&mut z1));
        assert_eq!((lp1, z1), (lp2, z2));
    }
}
