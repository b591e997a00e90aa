//! Anytime-valid evidence: e-processes and confidence sequences a regulator may read after
//! every sample, as often as they like, without the reading itself making false alarms.
//!
//! An e-process `E_n` for a null hypothesis is a non-negative process starting at 1 whose value
//! at any stopping time has expectation at most 1 under the null; by Ville's inequality the
//! probability that it *ever* reaches `1/α` is at most `α`. Its anytime p-value
//! `min(1, 1 / max_{m ≤ n} E_m)` is a p-value at every look, and a confidence sequence holds
//! its parameter at every `n` at once with probability at least `1 − α`.
//!
//! Three constructions, each with what it assumes:
//!
//! - [`flag_e_value`]: flags against the calibrated false-positive rate's upper bound `p0`.
//!   Null: each sample of the cohort is flagged with probability at most `p0`, independently
//!   of the past. A mixture of likelihood ratios over alternatives `q > p0` (the method of
//!   mixtures, Robbins 1970); each ratio is a supermartingale under every `p ≤ p0`, so their
//!   average is. It depends on the counts `(flagged, audited)` only: replicas merge by adding
//!   counts, and the order and batching of samples do not change it.
//! - [`flag_rate_sequence`]: a confidence sequence for the cohort's flag rate (Robbins'
//!   beta-binomial mixture, a Jeffreys prior): the rates `p` whose mixture martingale stays
//!   below `1/α`. Assumes the cohort's flags are independent with one rate (its samples arrive
//!   in an order unrelated to their membership). Counts only, like the e-value.
//! - [`ScoresEProcess`]: the cohort's scores against the `reference` cohort's, a two-sample
//!   test by betting (in the spirit of Shekhar & Ramdas 2023) that needs no pairing: the
//!   samples are taken in *rounds* (a round closes when both cohorts have new samples: in the
//!   library, [`ROUND`] of each; in a fleet, a scrape interval's increments), and in each round
//!   it bets that the cohort's samples rank higher than the pooled round's, ranking by the
//!   reference's distribution before the round. Null: within each round, the cohort's and the
//!   reference's scores are exchangeable (the same distribution, independent draws); nothing is
//!   assumed about how the two streams interleave, or about drift between rounds that both
//!   share. Under the null each round's factor has conditional mean 1 given the past and the
//!   round's pooled scores (a permutation argument), so the product is a test martingale. It
//!   depends on how samples fall into rounds: a fleet's value, computed per scrape interval,
//!   differs from one process's, but each is valid.
//!
//! From the flag-rate sequence and the calibrated rates, [`member_fraction_sequence`] bounds
//! the share of members in the cohort at every look, and its upper end is the non-membership
//! certificate ("fewer than ε of this cohort's samples were training members, at 1 − α").

use statrs::distribution::{Beta, ContinuousCDF};
use statrs::function::beta::ln_beta;
use statrs::function::gamma::ln_gamma;

use super::stats::ScoreBins;

/// The anytime level a regulator reads at (the confidence sequences are at `1 − ALPHA`).
pub const CS_ALPHA: f64 = 0.05;

/// Alternatives of the flag e-value's mixture: `q = p0 + (1 − p0)·g`, `g` from 1/1024 to 1/2
/// doubling (10 of them, equal weights), so that a flag rate a little above `p0` and a
/// memorised cohort flagged most of the time both grow it.
const FLAG_GRID: [f64; 10] =
    [1.0 / 1024.0, 1.0 / 512.0, 1.0 / 256.0, 1.0 / 128.0, 1.0 / 64.0, 1.0 / 32.0, 1.0 / 16.0, 1.0 / 8.0, 0.25, 0.5];

/// The tilts of the scores e-process: a mixture over fixed `λ`, so that none has to be tuned
/// (each is a test martingale; their average is one). The witness lies in [0, 1], so a round's
/// cohort sum moves by at most its size.
const TILTS: [f64; 6] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0];

/// Samples of each of the cohort and the reference that close a round of [`ScoresEProcess`]
/// in the library.
pub const ROUND: u64 = 16;

/// `ln Σ exp(x_i) − ln(len)`: the log of the average of `exp(x_i)`, without overflow.
fn ln_mean_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + (xs.iter().map(|x| (x - m).exp()).sum::<f64>() / xs.len() as f64).ln()
}

/// `ln` of the flag e-value of `flagged` of `audited` samples against a flag rate of at most
/// `p0` (see the module's notes). `p0` outside (0, 1) gives 0 (no evidence can be had).
pub fn ln_flag_e_value(flagged: u64, audited: u64, p0: f64) -> f64 {
    if !(p0 > 0.0 && p0 < 1.0) || flagged > audited {
        return 0.0;
    }
    let (k, rest) = (flagged as f64, (audited - flagged) as f64);
    let terms: Vec<f64> = FLAG_GRID
        .iter()
        .map(|g| {
            let q = p0 + (1.0 - p0) * g;
            k * (q / p0).ln() + rest * ((1.0 - q) / (1.0 - p0)).ln()
        })
        .collect();
    ln_mean_exp(&terms)
}

/// The flag e-value (see [`ln_flag_e_value`]), saturating at `f64::MAX`.
pub fn flag_e_value(flagged: u64, audited: u64, p0: f64) -> f64 {
    ln_flag_e_value(flagged, audited, p0).exp().min(f64::MAX)
}

/// Robbins' beta-binomial mixture martingale at rates `p`, for `k` flags of `n` (Jeffreys
/// prior): `ln M(p) = ln B(½ + k, ½ + n − k) − ln B(½, ½) − ln L(p)`.
struct Mixture {
    k: f64,
    n: f64,
    ln_marginal: f64,
}

impl Mixture {
    fn new(k: f64, n: f64) -> Mixture {
        let (a, b) = (0.5, 0.5);
        Mixture { k, n, ln_marginal: ln_beta(a + k, b + n - k) - ln_beta(a, b) }
    }

    fn ln_at(&self, p: f64) -> f64 {
        // 0·ln 0 = 0: a rate of 0 explains no flags perfectly.
        let lp = if self.k > 0.0 { self.k * p.ln() } else { 0.0 };
        let lq = if self.n - self.k > 0.0 { (self.n - self.k) * (1.0 - p).ln() } else { 0.0 };
        self.ln_marginal - (lp + lq)
    }
}

/// A confidence sequence for the cohort's flag rate at level `1 − alpha`, from `flagged` of
/// `audited` samples: `(low, high)`, valid at every `audited` at once. `(0, 1)` before any
/// sample.
pub fn flag_rate_sequence(flagged: u64, audited: u64, alpha: f64) -> (f64, f64) {
    if audited == 0 || flagged > audited {
        return (0.0, 1.0);
    }
    let (k, n) = (flagged as f64, audited as f64);
    let level = (1.0 / alpha).ln();
    let mixture = Mixture::new(k, n);
    let inside = |p: f64| mixture.ln_at(p) < level;
    let hat = k / n;
    // The mixture is convex in p around its minimum at the estimate: bisect each side.
    let bisect = |mut outside: f64, mut inside_at: f64| {
        // 60 halvings of an interval within [0, 1]: below f64's resolution near the bounds.
        for _ in 0..60 {
            let mid = 0.5 * (outside + inside_at);
            if inside(mid) {
                inside_at = mid;
            } else {
                outside = mid;
            }
        }
        inside_at
    };
    let low = if k == 0.0 || inside(0.0) { 0.0 } else { bisect(0.0, hat) };
    let high = if k == n || inside(1.0) { 1.0 } else { bisect(1.0, hat) };
    (low, high)
}

/// A calibrated rate's counts: `hits` of `of` calibration samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateCounts {
    /// Calibration samples at or above the threshold.
    pub hits: u64,
    /// Calibration samples.
    pub of: u64,
}

impl RateCounts {
    /// The counts behind a rate a calibration block states (`estimate` of `of` samples).
    pub fn from_rate(estimate: f64, of: u64) -> RateCounts {
        RateCounts { hits: (estimate * of as f64).round() as u64, of }
    }
}

/// The false-positive rate of a threshold chosen as the `(m + 1)`-th highest of `n`
/// calibration non-member scores (`m` of them at or above it) is Beta(m + 1, n − m)
/// distributed over calibration draws (continuous scores): its interval at `1 − alpha`.
pub fn fpr_interval(calibration: RateCounts, alpha: f64) -> (f64, f64) {
    let (m, n) = (calibration.hits as f64, calibration.of as f64);
    if calibration.of == 0 || m >= n {
        return (0.0, 1.0);
    }
    match Beta::new(m + 1.0, n - m) {
        Ok(beta) => (beta.inverse_cdf(alpha / 2.0), beta.inverse_cdf(1.0 - alpha / 2.0)),
        Err(_) => (0.0, 1.0),
    }
}

/// The Clopper-Pearson interval of `hits` of `of` at `1 − alpha` (the TPR on calibration
/// members, which are independent of the threshold).
pub fn clopper_pearson(rate: RateCounts, alpha: f64) -> (f64, f64) {
    let (k, n) = (rate.hits as f64, rate.of as f64);
    if rate.of == 0 {
        return (0.0, 1.0);
    }
    let low = if k == 0.0 { 0.0 } else { Beta::new(k, n - k + 1.0).map_or(0.0, |b| b.inverse_cdf(alpha / 2.0)) };
    let high = if k == n { 1.0 } else { Beta::new(k + 1.0, n - k).map_or(1.0, |b| b.inverse_cdf(1.0 - alpha / 2.0)) };
    (low, high)
}

/// What [`member_fraction_sequence`] can say about a cohort.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FractionSequence {
    /// The share of members in the cohort lies in `[low, high]` at every look, with
    /// probability at least `1 − alpha` (the flag-rate sequence and both calibrated rates at
    /// `alpha / 3` each).
    pub low: f64,
    /// See `low`.
    pub high: f64,
    /// The non-membership certificate: fewer than this share of the cohort's samples were
    /// members, at `1 − alpha`; `None` when the head cannot certify anything (its calibrated
    /// TPR is not surely above its FPR: no signal to bound membership with).
    pub certificate: Option<f64>,
}

/// Bounds the cohort's member share `π` from `flag rate = π·TPR + (1 − π)·FPR`, with the flag
/// rate's confidence sequence and the calibrated rates' intervals (each at `alpha / 3`).
pub fn member_fraction_sequence(
    flagged: u64,
    audited: u64,
    fpr: RateCounts,
    tpr: RateCounts,
    alpha: f64,
) -> FractionSequence {
    let part = alpha / 3.0;
    member_fraction_within(flagged, audited, fpr_interval(fpr, part), clopper_pearson(tpr, part), part)
}

/// [`member_fraction_sequence`] with the calibrated rates' intervals already computed (each
/// at `part`, the flag-rate sequence's level too): what a monitor reading after every sample
/// recomputes.
pub fn member_fraction_within(
    flagged: u64,
    audited: u64,
    (f_lo, f_hi): (f64, f64),
    (t_lo, t_hi): (f64, f64),
    part: f64,
) -> FractionSequence {
    if t_lo <= f_hi {
        return FractionSequence { low: 0.0, high: 1.0, certificate: None };
    }
    let (r_lo, r_hi) = flag_rate_sequence(flagged, audited, part);
    // π = (r − f) / (t − f) grows with r and, in the range that matters, falls with f and t:
    // the extremes of the box give its bounds.
    let low = ((r_lo - f_hi) / (t_hi - f_hi)).clamp(0.0, 1.0);
    let high = ((r_hi - f_lo) / (t_lo - f_lo)).clamp(0.0, 1.0);
    FractionSequence { low, high, certificate: (high < 1.0).then_some(high) }
}

/// `ln E[exp(λ·S)]`, `S` the sum of `k` of the pooled values drawn without replacement (every
/// subset of size `k` equally likely): the elementary symmetric polynomial `e_k` of
/// `exp(λ·v)` over the pool, divided by `C(N, k)`. `O(N·k)` multiply-adds: the terms are
/// scaled to at most 1 by the largest `λ·v`, and the running polynomial is rescaled (its
/// scale kept in logs) before it could overflow.
fn ln_subset_mgf(pool: &[(f64, u64)], k: usize, lambda: f64) -> f64 {
    let top = pool.iter().map(|&(v, _)| lambda * v).fold(f64::NEG_INFINITY, f64::max);
    let mut e = vec![0.0f64; k + 1];
    e[0] = 1.0;
    let mut ln_scale = 0.0;
    let mut seen = 0usize;
    for &(v, count) in pool {
        let x = (lambda * v - top).exp();
        for _ in 0..count {
            seen += 1;
            for j in (1..=k.min(seen)).rev() {
                e[j] += e[j - 1] * x;
            }
            let largest = e.iter().copied().fold(0.0, f64::max);
            if largest > 1e200 {
                e.iter_mut().for_each(|c| *c /= largest);
                ln_scale += largest.ln();
            }
        }
    }
    let n = seen as f64;
    let ln_choose = ln_gamma(n + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma(n - k as f64 + 1.0);
    e[k].ln() + ln_scale + k as f64 * top - ln_choose
}

/// The cohort-versus-reference e-process (see the module's notes), fed round by round.
///
/// Each round multiplies each tilt's capital by `exp(λ·S) / E₀[exp(λ·S)]`, `S` the cohort's
/// sum of the witness (each score's mid-rank in the reference before the round) and `E₀` the
/// expectation over which of the round's pooled scores are the cohort's, every assignment
/// equally likely, as the null makes them. The factor has conditional mean 1 under the null,
/// and it uses every sample of the round: a round's growth grows with its size, where a bet on
/// a difference of means would be bounded per round.
#[derive(Debug, Clone)]
pub struct ScoresEProcess {
    /// `ln` of each tilt's capital.
    ln_capital: [f64; TILTS.len()],
    /// The largest e-value so far (for the anytime p-value).
    max_e: f64,
    rounds: u64,
}

impl Default for ScoresEProcess {
    fn default() -> Self {
        ScoresEProcess { ln_capital: [0.0; TILTS.len()], max_e: 1.0, rounds: 0 }
    }
}

impl ScoresEProcess {
    /// Takes one round: the cohort's and the reference's scores that arrived in it, ranked by
    /// the reference's scores before it (`reference_before`, which must not depend on the
    /// round). A round without samples of both, or without a reference history to rank
    /// with, does not bet. Costs `O(N·min(n_cohort, n_reference))` per tilt, `N` the round's
    /// samples.
    pub fn round(&mut self, cohort: &ScoreBins, reference_before: &ScoreBins, reference: &ScoreBins) {
        self.round_counts(cohort.counts(), reference_before.counts(), reference.counts());
    }

    /// [`round`](Self::round) on counts in any fixed bins, ordered by score (a fleet's
    /// histogram buckets): `cohort[b]`, `reference_before[b]` and `reference[b]` count bin `b`.
    pub fn round_counts(&mut self, cohort: &[u64], reference_before: &[u64], reference: &[u64]) {
        let bins = cohort.len().min(reference_before.len()).min(reference.len());
        let (nc, nr, before): (u64, u64, u64) =
            (cohort.iter().sum(), reference.iter().sum(), reference_before.iter().sum());
        if nc == 0 || nr == 0 || before == 0 {
            return;
        }
        // The witness: a bin's mid-rank in the reference before the round, in [0, 1].
        let mut w = vec![0.0f64; bins];
        let mut below = 0u64;
        for (b, slot) in w.iter_mut().enumerate() {
            let c = reference_before[b];
            *slot = (below as f64 + 0.5 * c as f64) / before as f64;
            below += c;
        }
        let sum = |counts: &[u64]| (0..bins).map(|b| counts[b] as f64 * w[b]).sum::<f64>();
        let pool: Vec<(f64, u64)> =
            (0..bins).map(|b| (w[b], cohort[b] + reference[b])).filter(|&(_, c)| c > 0).collect();
        // exp(λ·S_cohort) / E₀[·] equals exp(−λ·S_reference) / E₀[·]: the smaller side is
        // the cheaper subset to sum over.
        let (side, k, sign) =
            if nc <= nr { (sum(cohort), nc as usize, 1.0) } else { (sum(reference), nr as usize, -1.0) };
        for (capital, tilt) in self.ln_capital.iter_mut().zip(TILTS) {
            let lambda = sign * tilt;
            *capital += lambda * side - ln_subset_mgf(&pool, k, lambda);
        }
        self.rounds += 1;
        self.max_e = self.max_e.max(self.e_value());
    }

    /// `ln` of the e-value now.
    pub fn ln_e_value(&self) -> f64 {
        ln_mean_exp(&self.ln_capital)
    }

    /// The e-value now, saturating at `f64::MAX`.
    pub fn e_value(&self) -> f64 {
        self.ln_e_value().exp().min(f64::MAX)
    }

    /// `min(1, 1 / max e)`: a p-value at every look.
    pub fn anytime_p_value(&self) -> f64 {
        (1.0 / self.max_e).min(1.0)
    }

    /// Rounds that bet.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }
}

/// The e-BH procedure (Wang & Ramdas 2022): which of `e_values` to reject so that the false
/// discovery rate is at most `q`, under any dependence between them. Returns the rejected
/// positions, in increasing order.
pub fn e_bh(e_values: &[f64], q: f64) -> Vec<usize> {
    let k = e_values.len();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| e_values[b].total_cmp(&e_values[a]));
    // The largest r such that the r-th largest e-value is at least k / (q·r).
    let r = (1..=k).rev().find(|&r| e_values[order[r - 1]] >= k as f64 / (q * r as f64)).unwrap_or(0);
    let mut rejected: Vec<usize> = order[..r].to_vec();
    rejected.sort_unstable();
    rejected
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift uniforms in (0, 1) from a fixed seed.
    fn uniforms(seed: u64) -> impl Iterator<Item = f64> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        std::iter::repeat_with(move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        })
    }

    #[test]
    fn the_flag_e_value_is_one_at_start_and_grows_only_above_the_null() {
        assert_eq!(flag_e_value(0, 0, 0.02), 1.0);
        assert!(flag_e_value(2, 1000, 0.02) < 0.1, "a rate below p0 is evidence for the null");
        assert!(flag_e_value(100, 1000, 0.02) > 1e20);
        // Counts only: 5 replicas' sums equal one process's counts.
        assert_eq!(flag_e_value(30, 1000, 0.02), flag_e_value(6 + 6 + 6 + 6 + 6, 5 * 200, 0.02));
        assert_eq!(ln_flag_e_value(3, 10, 0.0), 0.0);
    }

    /// Ville's inequality, by simulation: streams at the null's boundary (rate exactly p0),
    /// looked at after every sample, rarely ever reach 1/alpha.
    #[test]
    fn under_continuous_monitoring_the_flag_e_process_rarely_ever_alarms() {
        let (p0, alpha, streams, length) = (0.02, 0.05, 1000, 2000);
        let mut ever = 0;
        let mut u = uniforms(11);
        for _ in 0..streams {
            let mut k = 0;
            for n in 1..=length {
                k += (u.next().unwrap() < p0) as u64;
                if flag_e_value(k, n, p0) >= 1.0 / alpha {
                    ever += 1;
                    break;
                }
            }
        }
        // At most alpha: 50 of 1000 expected at worst; 68 is beyond 2.5 standard deviations.
        assert!(ever < 68, "{ever} of {streams} streams ever reached 1/alpha");
    }

    #[test]
    fn the_flag_rate_sequence_covers_the_rate_at_every_look() {
        let (p, alpha, streams, length) = (0.1, 0.05, 600, 600);
        let mut left = 0;
        let mut u = uniforms(12);
        for _ in 0..streams {
            let mut k = 0;
            for n in 1..=length {
                k += (u.next().unwrap() < p) as u64;
                let (lo, hi) = flag_rate_sequence(k, n, alpha);
                if !(lo <= p && p <= hi) {
                    left += 1;
                    break;
                }
            }
        }
        // At most 5%: 30 of 600 expected at worst; 43 is beyond 2.5 standard deviations.
        assert!(left < 43, "{left} of {streams} streams left the sequence at some look");
        let (lo, hi) = flag_rate_sequence(100, 1000, 0.05);
        assert!(lo > 0.06 && hi < 0.145 && lo < 0.1 && 0.1 < hi, "({lo}, {hi})");
        assert_eq!(flag_rate_sequence(0, 0, 0.05), (0.0, 1.0));
        assert_eq!(flag_rate_sequence(0, 50, 0.05).0, 0.0);
    }

    #[test]
    fn the_certificate_bounds_members_and_says_when_it_cannot() {
        let fpr = RateCounts { hits: 10, of: 1000 };
        let tpr = RateCounts { hits: 600, of: 1000 };
        // 5,000 non-members flagged at the calibrated 1%: few members, certified.
        let s = member_fraction_sequence(50, 5000, fpr, tpr, 0.05);
        assert!(s.low == 0.0 && s.high < 0.03, "{s:?}");
        assert_eq!(s.certificate, Some(s.high));
        // Half members (flag rate 0.5·0.6 + 0.5·0.01): the sequence holds 0.5.
        let s = member_fraction_sequence(1525, 5000, fpr, tpr, 0.05);
        assert!(s.low < 0.5 && 0.5 < s.high, "{s:?}");
        // A head without signal (TPR as low as the FPR) certifies nothing.
        let s = member_fraction_sequence(50, 5000, fpr, RateCounts { hits: 12, of: 1000 }, 0.05);
        assert_eq!((s.low, s.high, s.certificate), (0.0, 1.0, None));
    }

    fn bins(scores: impl Iterator<Item = f64>) -> ScoreBins {
        ScoreBins::from_scores(scores.map(|s| s as f32))
    }

    #[test]
    fn the_scores_e_process_holds_its_level_and_finds_higher_scores() {
        // Null: cohort and reference from one distribution, rounds of 16 each, 100 rounds.
        let mut ever = 0;
        let mut u = uniforms(13);
        for _ in 0..300 {
            let mut e = ScoresEProcess::default();
            let mut history = bins(u.by_ref().take(16));
            for _ in 0..60 {
                let c = bins(u.by_ref().take(16));
                let r = bins(u.by_ref().take(16));
                e.round(&c, &history, &r);
                history.merge(&r);
                if e.e_value() >= 20.0 {
                    ever += 1;
                    break;
                }
            }
        }
        // At most 1/20: 15 of 300 expected at worst; 26 is beyond 2.5 standard deviations.
        assert!(ever < 26, "{ever} of 300 null streams ever reached 1/alpha = 20");
        // Alternative: the cohort's scores shifted up.
        let mut e = ScoresEProcess::default();
        let mut u = uniforms(14);
        let mut history = bins(u.by_ref().take(16));
        // AUC 2/3, as a cohort of half members of the memorising model.
        for _ in 0..100 {
            let c = bins(u.by_ref().take(16).map(|x| x.sqrt()));
            let r = bins(u.by_ref().take(16));
            e.round(&c, &history, &r);
            history.merge(&r);
        }
        assert!(e.e_value() > 1e4 && e.anytime_p_value() < 1e-4, "{}", e.e_value());
    }

    /// The permutation expectation, against every subset enumerated.
    #[test]
    fn the_subset_mgf_is_exact() {
        let pool = [(0.1, 2u64), (0.5, 1), (0.9, 3)];
        let values: Vec<f64> = pool.iter().flat_map(|&(v, c)| std::iter::repeat_n(v, c as usize)).collect();
        for k in 0..=values.len() {
            for lambda in [-3.0, 0.7, 5.0] {
                let (mut total, mut subsets) = (0.0, 0.0);
                for mask in 0u32..(1 << values.len()) {
                    if mask.count_ones() as usize == k {
                        let s: f64 = (0..values.len()).filter(|i| mask & (1 << i) != 0).map(|i| values[i]).sum();
                        total += (lambda * s).exp();
                        subsets += 1.0;
                    }
                }
                let exact = (total / subsets).ln();
                let ours = ln_subset_mgf(&pool, k, lambda);
                assert!((ours - exact).abs() < 1e-9, "k {k}, λ {lambda}: {ours} vs {exact}");
            }
        }
    }

    #[test]
    fn e_bh_rejects_the_strong_and_keeps_the_rest() {
        assert_eq!(e_bh(&[1000.0, 0.5, 300.0, 1.0], 0.1), vec![0, 2]);
        assert_eq!(e_bh(&[5.0, 5.0, 5.0], 0.1), Vec::<usize>::new());
        assert_eq!(e_bh(&[], 0.1), Vec::<usize>::new());
    }
}
