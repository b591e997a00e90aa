//! Binary-classification figures for membership scores (higher = more likely a member), with
//! stratified bootstrap intervals.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Area under the ROC curve: the probability that a random member outscores a random
/// non-member, ties counting one half (Mann–Whitney U).
pub fn auc(pos: &[f64], neg: &[f64]) -> f64 {
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f64, bool)> = pos.iter().map(|&s| (s, true)).chain(neg.iter().map(|&s| (s, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mid_rank * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let p = pos.len() as f64;
    (rank_sum - p * (p + 1.0) / 2.0) / (p * neg.len() as f64)
}

/// ROC points `(fpr, tpr)` from the strictest threshold to the loosest, one per distinct score.
pub fn curve(pos: &[f64], neg: &[f64]) -> Vec<(f64, f64)> {
    let mut all: Vec<(f64, bool)> = pos.iter().map(|&s| (s, true)).chain(neg.iter().map(|&s| (s, false))).collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (p, n) = (pos.len().max(1) as f64, neg.len().max(1) as f64);
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut points = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < all.len() {
        let s = all[i].0;
        while i < all.len() && all[i].0 == s {
            if all[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        points.push((fp as f64 / n, tp as f64 / p));
    }
    points
}

/// The highest true-positive rate of any threshold whose false-positive rate is at most
/// `max_fpr` (the usual "TPR at low FPR" of membership inference).
pub fn tpr_at_fpr(pos: &[f64], neg: &[f64], max_fpr: f64) -> f64 {
    curve(pos, neg).into_iter().filter(|&(f, _)| f <= max_fpr + 1e-12).map(|(_, t)| t).fold(0.0, f64::max)
}

/// Accuracy and balanced accuracy of the rule `score >= threshold` → member.
pub fn accuracy(pos: &[f64], neg: &[f64], threshold: f64) -> (f64, f64) {
    let tp = pos.iter().filter(|&&s| s >= threshold).count() as f64;
    let tn = neg.iter().filter(|&&s| s < threshold).count() as f64;
    let (p, n) = (pos.len() as f64, neg.len() as f64);
    ((tp + tn) / (p + n), (tp / p + tn / n) / 2.0)
}

/// A figure with its 95% bootstrap interval (`null` in JSON where it is not defined).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Estimate {
    #[serde(deserialize_with = "nan_if_null")]
    #[schemars(with = "Option<f64>")]
    pub value: f64,
    #[serde(deserialize_with = "nan_if_null")]
    #[schemars(with = "Option<f64>")]
    pub low: f64,
    #[serde(deserialize_with = "nan_if_null")]
    #[schemars(with = "Option<f64>")]
    pub high: f64,
}

/// JSON has no NaN: serde_json writes it as `null`, which reads back as NaN here.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} [{:.3}, {:.3}]", self.value, self.low, self.high)
    }
}

/// The figures of one scorer on one member / non-member pair of sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Figures {
    pub members: usize,
    pub non_members: usize,
    pub threshold: Option<f64>,
    pub accuracy: Option<Estimate>,
    pub balanced_accuracy: Option<Estimate>,
    pub auc: Estimate,
    pub tpr_at_1pct_fpr: Estimate,
    pub tpr_at_0_1pct_fpr: Estimate,
}

/// SplitMix64: a tiny generator whose sequence never changes between releases, so that
/// intervals are reproducible to the last digit.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is below 1e-9 for our sizes.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Figures with intervals from `rounds` stratified bootstrap resamples (members and
/// non-members resampled separately, so each resample stays balanced like the original).
pub fn figures(pos: &[f64], neg: &[f64], threshold: Option<f64>, rounds: usize, seed: u64) -> Figures {
    let point = |p: &[f64], n: &[f64]| {
        let (acc, bal) = threshold.map(|t| accuracy(p, n, t)).unwrap_or((f64::NAN, f64::NAN));
        [acc, bal, auc(p, n), tpr_at_fpr(p, n, 0.01), tpr_at_fpr(p, n, 0.001)]
    };
    let values = point(pos, neg);
    let mut samples: Vec<[f64; 5]> = Vec::with_capacity(rounds);
    let mut rng = SplitMix::new(seed);
    let (mut bp, mut bn) = (vec![0.0; pos.len()], vec![0.0; neg.len()]);
    for _ in 0..rounds {
        for x in bp.iter_mut() {
            *x = pos[rng.below(pos.len())];
        }
        for x in bn.iter_mut() {
            *x = neg[rng.below(neg.len())];
        }
        samples.push(point(&bp, &bn));
    }
    let estimate = |k: usize| {
        let mut v: Vec<f64> = samples.iter().map(|s| s[k]).filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let q = |f: f64| if v.is_empty() { f64::NAN } else { v[((v.len() - 1) as f64 * f).round() as usize] };
        Estimate { value: values[k], low: q(0.025), high: q(0.975) }
    };
    Figures {
        members: pos.len(),
        non_members: neg.len(),
        threshold,
        accuracy: threshold.map(|_| estimate(0)),
        balanced_accuracy: threshold.map(|_| estimate(1)),
        auc: estimate(2),
        tpr_at_1pct_fpr: estimate(3),
        tpr_at_0_1pct_fpr: estimate(4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_cases() {
        assert_eq!(auc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auc(&[1.0, 2.0], &[3.0, 4.0]), 0.0);
        assert_eq!(auc(&[1.0, 1.0], &[1.0, 1.0]), 0.5);
        // One of four pairs inverted.
        assert_eq!(auc(&[2.0, 4.0], &[1.0, 3.0]), 0.75);
    }

    #[test]
    fn tpr_at_low_fpr_respects_the_bound() {
        let pos: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let neg: Vec<f64> = (0..100).map(|i| i as f64 - 50.5).collect();
        // Negatives top out at 48.5: thresholds above it take members 49..99 (51) with FPR 0;
        // letting one negative through (FPR 1%) reaches down to 48.
        assert!((tpr_at_fpr(&pos, &neg, 0.0) - 0.51).abs() < 1e-12);
        assert!((tpr_at_fpr(&pos, &neg, 0.01) - 0.52).abs() < 1e-12);
        let c = curve(&pos, &neg);
        assert_eq!(*c.last().unwrap(), (1.0, 1.0));
        assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn intervals_cover_the_estimate_and_are_reproducible() {
        let mut rng = SplitMix::new(1);
        let pos: Vec<f64> = (0..500).map(|_| (rng.below(1000) as f64) / 1000.0 + 0.1).collect();
        let neg: Vec<f64> = (0..500).map(|_| (rng.below(1000) as f64) / 1000.0).collect();
        let a = figures(&pos, &neg, Some(0.5), 200, 7);
        let b = figures(&pos, &neg, Some(0.5), 200, 7);
        assert_eq!(a.auc.low, b.auc.low);
        assert!(a.auc.low <= a.auc.value && a.auc.value <= a.auc.high);
        assert!(a.auc.value > 0.55 && a.auc.value < 0.65, "{}", a.auc.value);
        let (acc, bal) = accuracy(&pos, &neg, 0.5);
        assert!((acc - bal).abs() < 1e-12, "balanced sets: both accuracies agree");
    }
}
