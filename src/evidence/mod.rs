//! Live membership evidence per cohort, from sufficient statistics kept by the workers.
//!
//! The primary evidence is anytime-valid ([`anytime`]): for every cohort, an e-process of its
//! flags against the calibrated false-positive rate's upper bound and one of its scores
//! against the `reference` cohort's, each with its anytime p-value, and a confidence sequence
//! for the share of members with the non-membership certificate it gives. A regulator may read
//! them after every sample: the probability that a non-member cohort's e-value *ever* reaches
//! `1/alpha` is at most `alpha`, and the sequence holds the member share at every look with
//! probability at least 95%.
//!
//! The fixed windows of earlier versions are kept beside them, for dashboards and alert rules
//! written for them: when a window of `evidence.window` audited samples completes, it is
//! tested once (a binomial test of its flags, a rank test of its scores against every
//! reference sample so far); an alarm at `alpha` is a false alarm with probability at most
//! `alpha` per window of non-members, so one is expected every `window / alpha` such samples.
//!
//! The vendor's thread never comes here: a worker takes a cohort's lock once per run of
//! samples of that cohort in a batch.

pub mod anytime;
pub mod stats;

use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts};

use crate::config::{Config, REFERENCE_COHORT};
use crate::error::{Error, Result};
use anytime::{RateCounts, ScoresEProcess, CS_ALPHA, ROUND};
use stats::{Interval, ScoreBins, Test};

/// The tests run on each completed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowTest {
    /// Flags at the calibrated threshold against the calibrated false-positive rate.
    Binomial,
    /// Scores against the `reference` cohort's (Mann-Whitney).
    Rank,
}

impl WindowTest {
    /// Both tests, in index order.
    pub const ALL: [WindowTest; 2] = [WindowTest::Binomial, WindowTest::Rank];

    /// The `test` label value.
    pub fn label(self) -> &'static str {
        match self {
            WindowTest::Binomial => "binomial",
            WindowTest::Rank => "rank",
        }
    }
}

/// What a completed window's test gave.
const RESULTS: [&str; 3] = ["alarm", "quiet", "skipped"];

/// The evidence on one cohort, as [`Auditor::evidence`](crate::Auditor::evidence) reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CohortEvidence {
    /// Samples of the cohort scored since start.
    pub audited: u64,
    /// Of those, scored at or above the threshold.
    pub flagged: u64,
    /// Share of members in the cohort (95%), from the flag rate and the calibrated rates;
    /// unknown without calibration.
    pub member_fraction: Interval,
    /// Windows completed (and tested).
    pub windows: u64,
    /// Samples in the current, incomplete window.
    pub window_progress: u64,
    /// The last completed window's tests, indexed like [`WindowTest::ALL`]; `None` before
    /// the first window, or when a test could not run (no calibration, too few references).
    pub last_window: [Option<Test>; 2],
    /// Completed windows whose test gave p < alpha, indexed like [`WindowTest::ALL`].
    pub alarms: [u64; 2],
    /// Rank test of every score so far against every reference score so far, with the AUC:
    /// a fixed-sample test, valid when looked at once (at the planned size, at close).
    pub overall_rank: Option<(Test, f64)>,
    /// The anytime-valid evidence, valid at every look.
    pub anytime: AnytimeEvidence,
}

/// A cohort's anytime-valid evidence ([`anytime`] says how each is built and what it assumes).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct AnytimeEvidence {
    /// E-values now, indexed like [`AnytimeTest::ALL`]: 1 at start; NaN where the test cannot
    /// run (flags without calibration; scores for the reference itself or without one).
    pub e_value: [f64; 2],
    /// `min(1, 1 / max e)` so far, indexed like [`AnytimeTest::ALL`]: a p-value at every look.
    pub p_value: [f64; 2],
    /// The share of members in the cohort, at 95% at every look (`[0, 1]` when nothing can be
    /// said; NaN without calibration).
    pub member_fraction: (f64, f64),
    /// Fewer than this share of the cohort's samples were training members, at 95%, valid
    /// whenever it is read; `None` when the head cannot certify (uncalibrated, or no signal).
    pub certificate: Option<f64>,
}

/// The anytime-valid tests of a cohort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnytimeTest {
    /// Flags against the calibrated false-positive rate's upper bound.
    Flags,
    /// Scores against the `reference` cohort's, round by round.
    Scores,
}

impl AnytimeTest {
    /// Both tests, in index order.
    pub const ALL: [AnytimeTest; 2] = [AnytimeTest::Flags, AnytimeTest::Scores];

    /// The `test` label value.
    pub fn label(self) -> &'static str {
        match self {
            AnytimeTest::Flags => "flags",
            AnytimeTest::Scores => "scores",
        }
    }
}

#[derive(Default)]
struct CohortState {
    window: ScoreBins,
    window_flagged: u64,
    all: ScoreBins,
    flagged: u64,
    windows: u64,
    last_window: [Option<Test>; 2],
    alarms: [u64; 2],
    /// The cohort's scores in the current round of the scores e-process.
    round: ScoreBins,
    /// The reference's scores when the current round began.
    reference_at_round: ScoreBins,
    scores: ScoresEProcess,
    /// The largest flag e-value so far.
    flags_max_e: f64,
}

/// The metric handles of one cohort.
struct CohortSeries {
    p_value: [Gauge; 2],
    windows: [[IntCounter; 3]; 2],
    member_fraction: [Gauge; 3],
    e_value: [Gauge; 2],
    anytime_p_value: [Gauge; 2],
    fraction_sequence: [Gauge; 2],
    certificate: Gauge,
    flagged: IntCounter,
}

/// Evidence of every cohort of an auditor.
pub(crate) struct Evidence {
    states: Vec<Mutex<CohortState>>,
    series: Vec<CohortSeries>,
    reference: Option<usize>,
    window: u64,
    alpha: f64,
    min_reference: u64,
    /// Calibrated rates; the binomial test's null is the FPR's upper bound (conservative).
    rates: Option<(Interval, Interval)>,
    /// The calibrated FPR's and TPR's intervals the member-share sequence uses (each at
    /// `CS_ALPHA / 3`), computed once: they depend on the calibration only.
    rate_intervals: Option<((f64, f64), (f64, f64))>,
    collectors: Vec<Box<dyn Collector>>,
}

fn metrics_error(e: prometheus::Error) -> Error {
    Error::config("metrics", e.to_string())
}

impl Evidence {
    pub(crate) fn new(config: &Config) -> Result<Evidence> {
        let names = config.cohort_names();
        let p_value = GaugeVec::new(
            Opts::new(
                "mint_evidence_p_value",
                "One-sided p-value of the cohort's last completed window (NaN before one): binomial, flags against the calibrated FPR; rank, scores against the reference cohort.",
            ),
            &["cohort", "test"],
        )
        .map_err(metrics_error)?;
        let windows = IntCounterVec::new(
            Opts::new(
                "mint_evidence_windows_total",
                "Completed evidence windows of the cohort, by test and result: alarm (p < alpha), quiet, or skipped (no calibration, or too few reference samples).",
            ),
            &["cohort", "test", "result"],
        )
        .map_err(metrics_error)?;
        let fraction = GaugeVec::new(
            Opts::new(
                "mint_cohort_member_fraction",
                "Estimated share of members in the cohort since start, with its 95% interval (bound=estimate|low|high); NaN without calibration.",
            ),
            &["cohort", "bound"],
        )
        .map_err(metrics_error)?;
        let e_value = GaugeVec::new(
            Opts::new(
                "mint_cohort_e_value",
                "Anytime-valid e-value of the cohort (1 at start; NaN where the test cannot run): flags, against the calibrated FPR's upper bound; scores, against the reference cohort's. Under the null it ever reaches 1/alpha with probability at most alpha.",
            ),
            &["cohort", "test"],
        )
        .map_err(metrics_error)?;
        let anytime_p = GaugeVec::new(
            Opts::new(
                "mint_cohort_anytime_p_value",
                "min(1, 1 / the largest e-value so far): a p-value valid at every look.",
            ),
            &["cohort", "test"],
        )
        .map_err(metrics_error)?;
        let sequence = GaugeVec::new(
            Opts::new(
                "mint_cohort_member_fraction_sequence",
                "Share of members in the cohort, a 95% confidence sequence valid at every look (bound=low|high); NaN without calibration.",
            ),
            &["cohort", "bound"],
        )
        .map_err(metrics_error)?;
        let certificate = GaugeVec::new(
            Opts::new(
                "mint_cohort_non_membership_certificate",
                "Fewer than this share of the cohort's samples were training members, at 95%, valid whenever read; NaN when the head cannot certify (uncalibrated, or TPR not surely above FPR).",
            ),
            &["cohort"],
        )
        .map_err(metrics_error)?;
        let flagged = IntCounterVec::new(
            Opts::new(
                "mint_cohort_flagged_total",
                "Samples of the cohort scored at or above the threshold; with mint_membership_score_count, the counts a fleet's flag evidence sums.",
            ),
            &["cohort"],
        )
        .map_err(metrics_error)?;
        let alpha = Gauge::new("mint_evidence_alpha", "Significance level of each evidence window's tests.")
            .map_err(metrics_error)?;
        alpha.set(config.evidence.alpha);
        let window = IntGauge::new("mint_evidence_window_samples", "Audited samples per evidence window.")
            .map_err(metrics_error)?;
        window.set(i64::try_from(config.evidence.window).unwrap_or(i64::MAX));

        let series = names
            .iter()
            .map(|&cohort| CohortSeries {
                p_value: WindowTest::ALL.map(|t| {
                    let g = p_value.with_label_values(&[cohort, t.label()]);
                    g.set(f64::NAN);
                    g
                }),
                windows: WindowTest::ALL.map(|t| RESULTS.map(|r| windows.with_label_values(&[cohort, t.label(), r]))),
                member_fraction: ["estimate", "low", "high"].map(|b| {
                    let g = fraction.with_label_values(&[cohort, b]);
                    g.set(f64::NAN);
                    g
                }),
                e_value: AnytimeTest::ALL.map(|t| e_value.with_label_values(&[cohort, t.label()])),
                anytime_p_value: AnytimeTest::ALL.map(|t| anytime_p.with_label_values(&[cohort, t.label()])),
                fraction_sequence: ["low", "high"].map(|b| sequence.with_label_values(&[cohort, b])),
                certificate: certificate.with_label_values(&[cohort]),
                flagged: flagged.with_label_values(&[cohort]),
            })
            .collect();
        let rates = config.calibration().map(|c| {
            let interval = |r: crate::config::Rate| Interval { estimate: r.estimate, low: r.low, high: r.high };
            (interval(c.fpr), interval(c.tpr))
        });
        let rate_intervals = config.calibration().map(|c| {
            let part = CS_ALPHA / 3.0;
            (
                anytime::fpr_interval(RateCounts::from_rate(c.fpr.estimate, c.non_members), part),
                anytime::clopper_pearson(RateCounts::from_rate(c.tpr.estimate, c.members), part),
            )
        });
        let evidence = Evidence {
            states: names.iter().map(|_| Mutex::default()).collect(),
            series,
            reference: names.iter().position(|&n| n == REFERENCE_COHORT),
            window: config.evidence.window,
            alpha: config.evidence.alpha,
            min_reference: config.evidence.min_reference,
            rates,
            rate_intervals,
            collectors: vec![
                Box::new(p_value),
                Box::new(windows),
                Box::new(fraction),
                Box::new(alpha),
                Box::new(window),
                Box::new(e_value),
                Box::new(anytime_p),
                Box::new(sequence),
                Box::new(certificate),
                Box::new(flagged),
            ],
        };
        for cohort in 0..names.len() {
            let state = evidence.states[cohort].lock().unwrap_or_else(|e| e.into_inner());
            evidence.publish(cohort, &state);
        }
        Ok(evidence)
    }

    /// The gauges and counters, for the auditor's registry.
    pub(crate) fn collectors(&mut self) -> Vec<Box<dyn Collector>> {
        std::mem::take(&mut self.collectors)
    }

    /// Records the scores of samples of one `cohort` (each flagged when at or above the
    /// threshold), completing and testing windows as they fill.
    pub(crate) fn record(&self, cohort: usize, scores: impl Iterator<Item = (f32, bool)>) {
        let mut state = self.states[cohort].lock().unwrap_or_else(|e| e.into_inner());
        let mut flagged_now = 0;
        for (score, flagged) in scores {
            state.window.add(score);
            state.all.add(score);
            state.round.add(score);
            state.window_flagged += flagged as u64;
            state.flagged += flagged as u64;
            flagged_now += flagged as u64;
            if state.window.total() >= self.window {
                self.complete_window(cohort, &mut state);
            }
            if state.round.total() >= ROUND {
                self.try_round(cohort, &mut state);
            }
        }
        self.series[cohort].flagged.inc_by(flagged_now);
        // The flag e-value changes only here: its running maximum over every look is its
        // maximum over these updates.
        let e = self.flags_e_value(&state);
        if e.is_finite() {
            state.flags_max_e = state.flags_max_e.max(e);
        }
        self.publish(cohort, &state);
    }

    /// Closes the cohort's round of the scores e-process when the reference has had
    /// [`ROUND`] new samples too.
    fn try_round(&self, cohort: usize, state: &mut CohortState) {
        let Some(r) = self.reference.filter(|&r| r != cohort) else { return };
        let reference = self.states[r].lock().unwrap_or_else(|e| e.into_inner());
        let new = reference.all.since(&state.reference_at_round);
        if new.total() < ROUND {
            return;
        }
        let CohortState { scores, round, reference_at_round, .. } = state;
        scores.round(round, reference_at_round, &new);
        *reference_at_round = reference.all.clone();
        round.clear();
    }

    fn complete_window(&self, cohort: usize, state: &mut CohortState) {
        let binomial =
            self.rates.map(|(fpr, _)| stats::binomial_test(state.window_flagged, state.window.total(), fpr.high));
        let rank = match self.reference {
            Some(r) if r != cohort => {
                let reference = self.states[r].lock().unwrap_or_else(|e| e.into_inner());
                (reference.all.total() >= self.min_reference).then(|| stats::rank_test(&state.window, &reference.all).0)
            }
            _ => None,
        };
        // The reference is not tested against itself: its rank series stay at NaN, unskipped.
        let rank_applies = self.reference.is_some_and(|r| r != cohort);
        for (i, test) in [binomial, rank].into_iter().enumerate() {
            state.last_window[i] = test;
            let series = &self.series[cohort];
            match test {
                Some(t) => {
                    series.p_value[i].set(t.p_value);
                    let alarm = t.p_value < self.alpha;
                    state.alarms[i] += alarm as u64;
                    series.windows[i][if alarm { 0 } else { 1 }].inc();
                }
                None if i == 1 && !rank_applies => {}
                None => {
                    series.p_value[i].set(f64::NAN);
                    series.windows[i][2].inc();
                }
            }
        }
        state.windows += 1;
        state.window.clear();
        state.window_flagged = 0;
    }

    fn fraction(&self, state: &CohortState) -> Interval {
        match self.rates {
            Some((fpr, tpr)) => stats::member_fraction(state.flagged, state.all.total(), fpr, tpr),
            None => Interval::UNKNOWN,
        }
    }

    /// The flag e-value of a cohort's counts (NaN without calibration).
    fn flags_e_value(&self, state: &CohortState) -> f64 {
        match self.rates {
            Some((fpr, _)) => anytime::flag_e_value(state.flagged, state.all.total(), fpr.high),
            None => f64::NAN,
        }
    }

    /// The anytime evidence of a cohort's state.
    fn anytime(&self, cohort: usize, state: &CohortState) -> AnytimeEvidence {
        let flags_e = self.flags_e_value(state);
        let scores_apply = self.reference.is_some_and(|r| r != cohort);
        let scores_e = if scores_apply { state.scores.e_value() } else { f64::NAN };
        let flags_p = if flags_e.is_nan() { f64::NAN } else { (1.0 / state.flags_max_e.max(flags_e)).min(1.0) };
        let scores_p = if scores_apply { state.scores.anytime_p_value() } else { f64::NAN };
        let (member_fraction, certificate) = match self.rate_intervals {
            Some((fpr, tpr)) => {
                let n = state.all.total();
                let s = anytime::member_fraction_within(state.flagged, n, fpr, tpr, CS_ALPHA / 3.0);
                ((s.low, s.high), s.certificate)
            }
            None => ((f64::NAN, f64::NAN), None),
        };
        AnytimeEvidence { e_value: [flags_e, scores_e], p_value: [flags_p, scores_p], member_fraction, certificate }
    }

    fn publish(&self, cohort: usize, state: &CohortState) {
        let f = self.fraction(state);
        let series = &self.series[cohort];
        for (gauge, value) in series.member_fraction.iter().zip([f.estimate, f.low, f.high]) {
            gauge.set(value);
        }
        let a = self.anytime(cohort, state);
        for i in 0..2 {
            series.e_value[i].set(a.e_value[i]);
            series.anytime_p_value[i].set(a.p_value[i]);
        }
        series.fraction_sequence[0].set(a.member_fraction.0);
        series.fraction_sequence[1].set(a.member_fraction.1);
        series.certificate.set(a.certificate.unwrap_or(f64::NAN));
    }

    /// The evidence on `cohort` now.
    pub(crate) fn snapshot(&self, cohort: usize) -> CohortEvidence {
        let state = self.states[cohort].lock().unwrap_or_else(|e| e.into_inner());
        let overall_rank = match self.reference {
            Some(r) if r != cohort => {
                let reference = self.states[r].lock().unwrap_or_else(|e| e.into_inner());
                (reference.all.total() >= self.min_reference && state.all.total() > 0)
                    .then(|| stats::rank_test(&state.all, &reference.all))
            }
            _ => None,
        };
        CohortEvidence {
            audited: state.all.total(),
            flagged: state.flagged,
            member_fraction: self.fraction(&state),
            windows: state.windows,
            window_progress: state.window.total(),
            last_window: state.last_window,
            alarms: state.alarms,
            overall_rank,
            anytime: self.anytime(cohort, &state),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::tests::{calibration_json, GOOD};

    /// A calibrated configuration (threshold 0.9, FPR ≤ 1.6%, TPR ≈ 60%) with a reference and
    /// a suspect cohort, windows of 200.
    fn evidence() -> Evidence {
        let json = GOOD
            .replace(r#""kind": "vanilla","#, &format!(r#""kind": "vanilla", {},"#, calibration_json(0.9)))
            .replacen(
                '{',
                r#"{"cohorts": ["reference", "suspect"], "evidence": {"window": 200, "min_reference": 200},"#,
                1,
            );
        Evidence::new(&Config::from_json(&json, Path::new("/c")).unwrap()).unwrap()
    }

    /// Uniform draws from a fixed seed (xorshift), as scores in (0, 1).
    fn uniform(seed: u64) -> impl Iterator<Item = f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        std::iter::repeat_with(move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 + 0.5) / (1u64 << 24) as f32
        })
    }

    const REFERENCE: usize = 1;
    const SUSPECT: usize = 2;

    fn record(e: &Evidence, cohort: usize, scores: impl Iterator<Item = f32>) {
        e.record(cohort, scores.map(|s| (s, s >= 0.9)));
    }

    #[test]
    fn non_member_windows_alarm_at_most_at_the_nominal_rate() {
        let e = evidence();
        // Non-members everywhere: scores uniform, so 10% at or above the threshold of 0.9
        // (a head whose calibration is wrong) would make the binomial test alarm; here the
        // non-members are scored below 0.9 but for 1% of them, as calibrated.
        let calibrated = |seed| uniform(seed).map(|u| if u < 0.99 { u * 0.9 / 0.99 } else { 0.9 + (u - 0.99) * 10.0 });
        record(&e, REFERENCE, calibrated(1).take(2000));
        record(&e, SUSPECT, calibrated(2).take(200 * 500));
        let s = e.snapshot(SUSPECT);
        assert_eq!((s.windows, s.window_progress), (500, 0));
        // 500 windows at alpha 1%: 5 expected; 14 or more happens with probability < 0.1%.
        assert!(s.alarms[0] < 14 && s.alarms[1] < 14, "{:?}", s.alarms);
        let f = s.member_fraction;
        assert!(f.low <= 0.0 + 1e-12 && f.estimate < 0.01, "{f:?}");
        // The reference is not tested against itself.
        assert!(e.snapshot(REFERENCE).last_window[1].is_none());
    }

    #[test]
    fn member_windows_alarm_and_the_fraction_is_recovered() {
        let e = evidence();
        record(&e, REFERENCE, uniform(3).take(1000).map(|u| u * 0.8));
        // Half members (scored above the threshold 60% of the time, as calibrated), half
        // non-members (1% above).
        let mixed = uniform(4).zip(uniform(5)).map(|(u, v)| match (u < 0.5, v) {
            (true, v) if v < 0.6 => 0.9 + v / 6.0,
            (true, v) => 0.5 + v * 0.3,
            (false, v) if v < 0.01 => 0.95,
            (false, v) => v * 0.8,
        });
        record(&e, SUSPECT, mixed.take(4000));
        let s = e.snapshot(SUSPECT);
        assert_eq!(s.windows, 20);
        assert_eq!(s.alarms, [20, 20], "every window of half members must alarm");
        let f = s.member_fraction;
        assert!(f.low < 0.5 && 0.5 < f.high && (f.estimate - 0.5).abs() < 0.05, "{f:?}");
        let (overall, auc) = s.overall_rank.unwrap();
        assert!(overall.p_value < 1e-50 && auc > 0.7, "{overall:?} {auc}");
    }

    #[test]
    fn anytime_evidence_grows_on_members_and_certifies_non_members() {
        let calibrated = |seed| uniform(seed).map(|u| if u < 0.99 { u * 0.9 / 0.99 } else { 0.9 + (u - 0.99) * 10.0 });
        let e = evidence();
        let fresh = e.snapshot(SUSPECT).anytime;
        assert_eq!((fresh.e_value, fresh.p_value), ([1.0, 1.0], [1.0, 1.0]));
        // Reference and suspect interleaved as a serving process would see them.
        for k in 0..50u64 {
            record(&e, REFERENCE, calibrated(100 + k).take(40));
            record(&e, SUSPECT, calibrated(200 + k).take(100));
        }
        let quiet = e.snapshot(SUSPECT).anytime;
        assert!(quiet.e_value.iter().all(|&v| v < 20.0), "{quiet:?}");
        // 5,000 non-members: fewer than 3% members, at 95%.
        assert!(quiet.certificate.is_some_and(|c| c < 0.03), "{quiet:?}");
        assert!(quiet.member_fraction.0 == 0.0 && quiet.member_fraction.1 == quiet.certificate.unwrap());
        // The reference is not tested against itself.
        let r = e.snapshot(REFERENCE).anytime;
        assert!(r.e_value[1].is_nan() && r.p_value[1].is_nan() && r.e_value[0].is_finite());

        // Members (60% flagged, as calibrated): both e-values pass 1/alpha within 200 samples.
        let e = evidence();
        record(&e, REFERENCE, calibrated(7).take(400));
        let members = uniform(8).map(|v| if v < 0.6 { 0.9 + v / 6.0 } else { 0.5 + v * 0.3 });
        let mut members = members.peekable();
        for _ in 0..10 {
            record(&e, SUSPECT, members.by_ref().take(20));
            record(&e, REFERENCE, calibrated(9).take(20));
        }
        let a = e.snapshot(SUSPECT).anytime;
        assert!(a.e_value[0] > 1e6 && a.e_value[1] > 100.0, "{a:?}");
        assert!(a.p_value[0] < 1e-6 && a.p_value[1] < 0.01, "{a:?}");
        assert!(a.member_fraction.0 > 0.5, "{a:?}");
    }

    #[test]
    fn without_enough_reference_the_rank_test_is_skipped() {
        let e = evidence();
        record(&e, REFERENCE, uniform(6).take(50));
        record(&e, SUSPECT, uniform(7).take(200));
        let s = e.snapshot(SUSPECT);
        assert_eq!(s.windows, 1);
        assert!(s.last_window[0].is_some() && s.last_window[1].is_none());
        assert!(s.overall_rank.is_none());
    }
}
