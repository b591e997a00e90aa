//! Calibration: the live threshold for a target false-positive rate, chosen on held-out
//! non-members, with intervals a regulator can rely on.
//!
//! The non-member set is split (seeded) into a calibration part, which chooses the threshold,
//! and a check part, which measures it afresh. The threshold lies midway between the `m`-th
//! and the `(m + 1)`-th highest calibration scores, `m = ⌊target · n⌋`, so that `m`
//! calibration non-members reach it. The false-positive rate of a threshold at an order
//! statistic of `n` exchangeable scores is Beta distributed whatever the score distribution;
//! ours lies between two of them, so the interval runs from the 2.5% quantile of
//! `Beta(m, n − m + 1)` to the 97.5% quantile of `Beta(m + 1, n − m)`: distribution-free, and
//! conservative by the width of one gap. A bootstrap of the very set that chose the threshold
//! would be optimistic instead. The TPR is measured at
//! that threshold on the members (which played no part in choosing it), with a stratified
//! bootstrap interval.

use anyhow::{ensure, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use statrs::distribution::{Beta, ContinuousCDF};

use crate::roc::SplitMix;

/// Quantiles of the calibration non-members' scores written into the configuration (the
/// library puts its histogram buckets there).
const QUANTILES: [f64; 10] = [0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995];

/// What calibration chose and measured.
#[derive(Debug, Clone)]
pub struct Calibrated {
    pub target_fpr: f64,
    pub threshold: f32,
    /// Calibration non-members at or above the threshold, of how many.
    pub flagged: (usize, usize),
    /// 95% interval of the threshold's FPR on new non-members.
    pub fpr_interval: (f64, f64),
    /// TPR on the members, with its bootstrap interval.
    pub tpr: (f64, f64, f64),
    pub members: usize,
    /// Check non-members at or above the threshold, of how many (0 of 0 without a check part).
    pub check: (usize, usize),
    /// Positions in the non-member set of the calibration part, and of the check part.
    pub calibration_part: Vec<usize>,
    pub check_part: Vec<usize>,
    pub quantiles: Vec<(f64, f64)>,
    pub digest: String,
}

/// Chooses the threshold for `target_fpr` on a seeded `fraction` of the non-members `neg`.
pub fn calibrate(
    pos: &[f64],
    neg: &[f64],
    target_fpr: f64,
    fraction: f64,
    rounds: usize,
    seed: u64,
) -> Result<Calibrated> {
    ensure!(target_fpr > 0.0 && target_fpr < 0.5, "--calibrate takes a target FPR in (0, 0.5), not {target_fpr}");
    ensure!(fraction > 0.0 && fraction <= 1.0, "--calibration-fraction must lie in (0, 1], not {fraction}");
    let (calibration_part, check_part) = parts(neg.len(), fraction, seed);
    let n = calibration_part.len();
    let digest = digest(&calibration_part, neg);
    ensure!(
        n as f64 * target_fpr >= 1.0,
        "{n} calibration non-members cannot calibrate an FPR of {target_fpr}: at least {} are needed",
        (1.0 / target_fpr).ceil()
    );
    let mut scores: Vec<f32> = calibration_part.iter().map(|&i| neg[i] as f32).collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    let m = (target_fpr * n as f64).floor() as usize;
    let at = scores[m];
    ensure!(
        at < 1.0,
        "the head scores {} calibration non-members at 1.0: no threshold in [0, 1] has FPR {target_fpr}",
        m + 1
    );
    // Any threshold above the (m + 1)-th highest score and up to the m-th flags the same
    // calibration non-members; the middle of that gap keeps a score recomputed on another CPU
    // (whose kernels may round differently in the last bit) on the same side of it.
    let above = if m == 0 { 1.0 } else { scores[m - 1] };
    let middle = at + (above - at) / 2.0;
    let threshold = if middle > at { middle } else { at.next_up() };
    let flagged = scores.iter().filter(|&&s| s >= threshold).count();
    // The FPR of such a threshold on new non-members lies between those of the two order
    // statistics around it: Beta(m, n − m + 1) (the m-th highest) and Beta(m + 1, n − m).
    let upper = Beta::new((m + 1) as f64, (n - m) as f64)?;
    let lower = if m == 0 { 0.0 } else { Beta::new(m as f64, (n - m + 1) as f64)?.inverse_cdf(0.025) };
    let fpr_interval = (lower, upper.inverse_cdf(0.975));

    let members_flagged = |p: &mut dyn Iterator<Item = f64>| p.filter(|&s| s as f32 >= threshold).count();
    let tpr = members_flagged(&mut pos.iter().copied()) as f64 / pos.len().max(1) as f64;
    let mut rng = SplitMix::new(seed);
    let mut boot: Vec<f64> = (0..rounds)
        .map(|_| {
            let k = members_flagged(&mut (0..pos.len()).map(|_| pos[rng.below(pos.len())]));
            k as f64 / pos.len() as f64
        })
        .collect();
    boot.sort_by(f64::total_cmp);
    let q = |f: f64| if boot.is_empty() { tpr } else { boot[((boot.len() - 1) as f64 * f).round() as usize] };
    let check = (check_part.iter().filter(|&&i| neg[i] as f32 >= threshold).count(), check_part.len());

    // Ascending, for quantiles.
    scores.reverse();
    let quantiles = QUANTILES
        .iter()
        .filter(|&&p| (1.0 - p) * n as f64 >= 1.0)
        .map(|&p| (p, scores[((n - 1) as f64 * p).round() as usize] as f64))
        .collect();
    Ok(Calibrated {
        target_fpr,
        threshold,
        flagged: (flagged, n),
        fpr_interval,
        tpr: (tpr, q(0.025).min(tpr), q(0.975).max(tpr)),
        members: pos.len(),
        check,
        calibration_part,
        check_part,
        quantiles,
        digest,
    })
}

/// The seeded split of `n` non-members into a calibration part (`fraction` of them) and a
/// check part, as positions in increasing order.
pub fn parts(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix::new(seed ^ 0xca11_b7a7_e5ee_d000).shuffle(&mut order);
    let k = ((n as f64 * fraction).round() as usize).min(n);
    let (mut calibration, mut check) = (order[..k].to_vec(), order[k..].to_vec());
    calibration.sort_unstable();
    check.sort_unstable();
    (calibration, check)
}

/// The calibration digest: sha256 over the calibration part's positions and scores, so that
/// a later run can tell it scored the very same non-members.
pub fn digest(part: &[usize], neg: &[f64]) -> String {
    let mut digest = Sha256::new();
    for &i in part {
        digest.update(format!("{i}:{}\n", neg[i] as f32).as_bytes());
    }
    format!("{:x}", digest.finalize())
}

impl Calibrated {
    /// The FPR measured on the calibration part.
    pub fn fpr(&self) -> f64 {
        self.flagged.0 as f64 / self.flagged.1 as f64
    }

    /// Whether the check part agrees with the calibrated interval: its own 95% (Wilson)
    /// interval overlaps it. `None` without a check part.
    pub fn check_agrees(&self) -> Option<bool> {
        let (k, n) = self.check;
        (n > 0).then(|| {
            let w = mint_audit::evidence::stats::wilson(k as u64, n as u64);
            w.low <= self.fpr_interval.1 && w.high >= self.fpr_interval.0
        })
    }

    /// The `head.calibration` block of the auditor configuration.
    pub fn config_block(&self, source: &str) -> serde_json::Value {
        let (low, high) = self.fpr_interval;
        json!({
            "target_fpr": self.target_fpr,
            "threshold": self.threshold,
            "fpr": {"estimate": self.fpr(), "low": low.min(self.fpr()), "high": high.max(self.fpr())},
            "tpr": {"estimate": self.tpr.0, "low": self.tpr.1, "high": self.tpr.2},
            "non_members": self.flagged.1,
            "members": self.members,
            "digest": self.digest,
            "quantiles": self.quantiles.iter().map(|&(q, score)| json!({"q": q, "score": score})).collect::<Vec<_>>(),
            "source": source,
        })
    }

    /// For report.json.
    pub fn report(&self, source: &str) -> serde_json::Value {
        let mut block = self.config_block(source);
        block["check"] = json!({
            "non_members": self.check.1, "flagged": self.check.0,
            "fpr": if self.check.1 > 0 { self.check.0 as f64 / self.check.1 as f64 } else { f64::NAN },
            "agrees": self.check_agrees(),
        });
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(n: usize, seed: u64, shift: f64) -> Vec<f64> {
        let mut rng = SplitMix::new(seed);
        (0..n).map(|_| (rng.below(1_000_000) as f64 + 0.5) / 1e6 * (1.0 - shift) + shift).collect()
    }

    #[test]
    fn at_most_the_target_share_of_calibration_non_members_reach_the_threshold() {
        let neg = uniform(2000, 1, 0.0);
        let pos = uniform(1000, 2, 0.5);
        let c = calibrate(&pos, &neg, 0.01, 0.5, 200, 0).unwrap();
        assert_eq!(c.flagged, (10, 1000));
        assert_eq!(c.calibration_part.len() + c.check_part.len(), 2000);
        // Uniform non-members: the threshold sits near 0.99, members (uniform on [0.5, 1]) are
        // flagged about 2% of the time.
        assert!((c.threshold - 0.99).abs() < 0.01, "{}", c.threshold);
        assert!(c.fpr_interval.0 < 0.01 && 0.01 < c.fpr_interval.1 && c.fpr_interval.1 < 0.02, "{:?}", c.fpr_interval);
        assert!(c.tpr.1 <= c.tpr.0 && c.tpr.0 <= c.tpr.2 && (c.tpr.0 - 0.02).abs() < 0.015, "{:?}", c.tpr);
        assert_eq!(c.check_agrees(), Some(true));
        let block = c.config_block("test");
        assert_eq!(block["threshold"].as_f64().unwrap() as f32, c.threshold);
        assert!(calibrate(&pos, &neg[..50], 0.01, 1.0, 10, 0).unwrap_err().to_string().contains("at least 100"));
    }

    #[test]
    fn the_interval_covers_the_fpr_on_new_non_members() {
        // Over 200 calibrations on fresh uniform non-members, the true FPR of the threshold
        // (1 − threshold) falls inside the 95% interval at least about 95% of the time.
        let covered = (0..200)
            .filter(|&seed| {
                let c = calibrate(&[0.9], &uniform(1000, seed + 10, 0.0), 0.01, 1.0, 0, seed).unwrap();
                let true_fpr = 1.0 - c.threshold as f64;
                c.fpr_interval.0 <= true_fpr && true_fpr <= c.fpr_interval.1
            })
            .count();
        assert!(covered >= 180, "{covered} of 200");
    }
}
