//! The statistics of membership evidence, as pure functions: shared by the live evidence of
//! the library and the offline dataset test of the `mint` toolkit, so both say the same.
//!
//! Scores are kept as counts in fixed bins on the logit scale (fine in both tails, where
//! memorised members and confident non-members sit), which are sufficient statistics for the
//! tests here: a rank test on binned scores treats a bin as a tie.

use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};

/// Bins of [`ScoreBins`].
pub const BINS: usize = 1024;
/// Scores are binned by their logit, clamped to ±`LOGIT_RANGE`.
const LOGIT_RANGE: f64 = 16.0;

/// Counts of scores in [`BINS`] fixed bins on the logit scale.
#[derive(Clone, Default)]
pub struct ScoreBins {
    /// Empty until the first score: a declared cohort that is never served costs nothing.
    counts: Vec<u64>,
    total: u64,
}

/// Equal counts are equal bins, allocated or not.
impl PartialEq for ScoreBins {
    fn eq(&self, other: &Self) -> bool {
        self.total == other.total && (0..BINS).all(|b| self.count(b) == other.count(b))
    }
}

impl Eq for ScoreBins {}

impl std::fmt::Debug for ScoreBins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScoreBins {{ total: {} }}", self.total)
    }
}

/// The bin of a score in [0, 1].
pub fn bin_of(score: f32) -> usize {
    let s = (score as f64).clamp(1e-12, 1.0 - 1e-12);
    let logit = (s / (1.0 - s)).ln().clamp(-LOGIT_RANGE, LOGIT_RANGE);
    let at = (logit + LOGIT_RANGE) / (2.0 * LOGIT_RANGE) * BINS as f64;
    (at as usize).min(BINS - 1)
}

impl ScoreBins {
    /// Counts one score.
    pub fn add(&mut self, score: f32) {
        if self.counts.is_empty() {
            self.counts = vec![0; BINS];
        }
        self.counts[bin_of(score)] += 1;
        self.total += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &ScoreBins) {
        if self.counts.is_empty() && !other.counts.is_empty() {
            self.counts = vec![0; BINS];
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The counts, bin by bin.
    pub fn counts(&self) -> &[u64] {
        &self.counts[..]
    }

    /// Scores counted in bin `b` (0 beyond the last bin).
    pub fn count(&self, b: usize) -> u64 {
        self.counts.get(b).copied().unwrap_or(0)
    }

    /// Scores counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The scores counted here and not in `earlier` (an earlier state of the same counts).
    pub fn since(&self, earlier: &ScoreBins) -> ScoreBins {
        let mut out = ScoreBins::default();
        if self.counts.is_empty() {
            return out;
        }
        out.counts = vec![0; BINS];
        for (b, o) in out.counts.iter_mut().enumerate() {
            *o = self.counts[b].saturating_sub(earlier.count(b));
        }
        out.total = out.counts.iter().sum();
        out
    }

    /// Forgets every score.
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
    }

    /// Bins scores.
    pub fn from_scores(scores: impl IntoIterator<Item = f32>) -> ScoreBins {
        let mut bins = ScoreBins::default();
        for s in scores {
            bins.add(s);
        }
        bins
    }
}

/// A one-sided test's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    /// The test statistic (a z score for the rank test, the count of members for the
    /// binomial one).
    pub statistic: f64,
    /// One-sided p-value: small when the cohort looks more like members.
    pub p_value: f64,
}

/// Exact one-sided binomial test: the probability that `n` non-members, each flagged with
/// probability `fpr`, give at least `members` flags.
pub fn binomial_test(members: u64, n: u64, fpr: f64) -> Test {
    let p_value = if members == 0 || n == 0 {
        1.0
    } else {
        match Binomial::new(fpr.clamp(0.0, 1.0), n) {
            Ok(b) => b.sf(members - 1),
            Err(_) => f64::NAN,
        }
    };
    Test { statistic: members as f64, p_value: p_value.clamp(0.0, 1.0) }
}

/// Mann-Whitney rank test that `suspect` scores tend to be higher than `reference` scores,
/// with ties (shared bins) at mid-rank, the tie-corrected variance and a continuity
/// correction; also gives the AUC of suspect against reference (0.5: no difference).
pub fn rank_test(suspect: &ScoreBins, reference: &ScoreBins) -> (Test, f64) {
    rank_test_counts(suspect.counts(), reference.counts())
}

/// [`rank_test`] on counts in any fixed bins ordered by score (a fleet's histogram buckets).
pub fn rank_test_counts(suspect: &[u64], reference: &[u64]) -> (Test, f64) {
    let (n, m) = (suspect.iter().sum::<u64>() as f64, reference.iter().sum::<u64>() as f64);
    if n == 0.0 || m == 0.0 {
        return (Test { statistic: f64::NAN, p_value: f64::NAN }, f64::NAN);
    }
    let (mut u, mut below, mut ties) = (0.0f64, 0.0f64, 0.0f64);
    for (&s, &r) in suspect.iter().zip(reference.iter()) {
        let (s, r) = (s as f64, r as f64);
        u += s * (below + r / 2.0);
        below += r;
        let t = s + r;
        ties += t * t * t - t;
    }
    let total = n + m;
    let variance = n * m / 12.0 * ((total + 1.0) - ties / (total * (total - 1.0)).max(1.0));
    let auc = u / (n * m);
    if variance <= 0.0 {
        return (Test { statistic: 0.0, p_value: 1.0 }, auc);
    }
    let z = (u - n * m / 2.0 - 0.5) / variance.sqrt();
    let p_value = Normal::standard().sf(z);
    (Test { statistic: z, p_value }, auc)
}

/// An estimate with a two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The point estimate.
    pub estimate: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl Interval {
    /// No estimate (NaN everywhere): no data, or nothing to estimate it from.
    pub const UNKNOWN: Interval = Interval { estimate: f64::NAN, low: f64::NAN, high: f64::NAN };
}

/// Wilson's 95% score interval for a proportion of `k` in `n`.
pub fn wilson(k: u64, n: u64) -> Interval {
    if n == 0 {
        return Interval::UNKNOWN;
    }
    const Z: f64 = 1.959_963_984_540_054;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let centre = (p + Z * Z / (2.0 * n)) / (1.0 + Z * Z / n);
    let half = Z / (1.0 + Z * Z / n) * (p * (1.0 - p) / n + Z * Z / (4.0 * n * n)).sqrt();
    Interval { estimate: p, low: (centre - half).max(0.0), high: (centre + half).min(1.0) }
}

/// The share of members in a cohort where `flagged` of `n` samples scored at or above a
/// threshold of known rates: a flag rate `r` is `π·tpr + (1 − π)·fpr`, so `π = (r − fpr) /
/// (tpr − fpr)`. The interval joins Wilson's on `r` with the calibration's intervals on both
/// rates (each bound taken at its least favourable end), clamped to [0, 1]. Unknown (NaN) when
/// the head does not separate (the TPR's interval reaches down to the FPR's) or there are no
/// samples.
pub fn member_fraction(flagged: u64, n: u64, fpr: Interval, tpr: Interval) -> Interval {
    let r = wilson(flagged, n);
    let solve = |r: f64, f: f64, t: f64| ((r - f) / (t - f)).clamp(0.0, 1.0);
    // A head whose rates' intervals overlap cannot tell how many members there are: a point
    // estimate without its interval would mislead.
    if n == 0 || tpr.low <= fpr.high {
        return Interval::UNKNOWN;
    }
    Interval {
        estimate: solve(r.estimate, fpr.estimate, tpr.estimate),
        // π grows with r, and falls as either rate grows (for fpr <= r <= tpr).
        low: solve(r.low, fpr.high, tpr.high),
        high: solve(r.high, fpr.low, tpr.low),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_monotone_and_cover_the_tails() {
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(1.0), BINS - 1);
        assert_eq!(bin_of(0.5), BINS / 2);
        let mut last = 0;
        for i in 0..=1000 {
            let b = bin_of(i as f32 / 1000.0);
            assert!(b >= last);
            last = b;
        }
        assert_ne!(bin_of(0.999), bin_of(0.9999));
    }

    #[test]
    fn binomial_matches_a_hand_computed_tail() {
        // P(X >= 2) for X ~ Bin(3, 0.5) = 4/8.
        assert!((binomial_test(2, 3, 0.5).p_value - 0.5).abs() < 1e-12);
        assert_eq!(binomial_test(0, 10, 0.1).p_value, 1.0);
        assert!(binomial_test(30, 100, 0.01).p_value < 1e-20);
    }

    #[test]
    fn the_rank_test_tells_shifted_scores_from_equal_ones() {
        let reference = ScoreBins::from_scores((0..500).map(|i| (i as f32 + 0.5) / 1000.0));
        let same = ScoreBins::from_scores((0..500).map(|i| (i as f32 + 0.7) / 1000.0));
        let higher = ScoreBins::from_scores((0..500).map(|i| 0.3 + (i as f32 + 0.5) / 1000.0));
        let (t, auc) = rank_test(&same, &reference);
        assert!(t.p_value > 0.3 && (auc - 0.5).abs() < 0.01, "{t:?} {auc}");
        let (t, auc) = rank_test(&higher, &reference);
        assert!(t.p_value < 1e-10 && auc > 0.8, "{t:?} {auc}");
        // Every score in one bin: ties throughout, no evidence either way.
        let tied = ScoreBins::from_scores([0.5f32; 50]);
        assert_eq!(rank_test(&tied, &tied).0.p_value, 1.0);
        assert!(rank_test(&ScoreBins::default(), &reference).0.p_value.is_nan());
    }

    #[test]
    fn wilson_and_member_fraction() {
        let w = wilson(50, 100);
        assert!((w.low - 0.404).abs() < 1e-3 && (w.high - 0.596).abs() < 1e-3, "{w:?}");
        let fpr = Interval { estimate: 0.01, low: 0.005, high: 0.02 };
        let tpr = Interval { estimate: 0.51, low: 0.45, high: 0.55 };
        // Half members: r = 0.5·0.51 + 0.5·0.01 = 0.26.
        let f = member_fraction(260, 1000, fpr, tpr);
        assert!((f.estimate - 0.5).abs() < 1e-9 && f.low < 0.5 && f.high > 0.5, "{f:?}");
        assert_eq!(member_fraction(0, 1000, fpr, tpr).low, 0.0);
        let blind = Interval { estimate: 0.01, low: 0.0, high: 0.02 };
        assert!(member_fraction(10, 1000, fpr, blind).estimate.is_nan());
        // A TPR just above the FPR, but within its interval: not identifiable either.
        let weak = Interval { estimate: 0.012, low: 0.009, high: 0.015 };
        let f = member_fraction(13, 1000, fpr, weak);
        assert!(f.estimate.is_nan() && f.low.is_nan(), "{f:?}");
    }
}
