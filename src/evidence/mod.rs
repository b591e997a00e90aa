//! Live membership evidence per cohort, from sufficient statistics kept by the workers.
//!
//! Each cohort keeps binned scores and flag counts, for its current window and since start.
//! When a window of `evidence.window` audited samples completes, it is tested once, then
//! forgotten: a binomial test of its flags against the calibrated false-positive rate, and a
//! rank test of its scores against every `reference` sample so far. A window's tests are fixed
//! sample tests, so an alarm at `alpha` is a false alarm with probability at most `alpha`
//! per window of non-members, and one is expected every `window / alpha` such samples
//! (docs/evidence.md says why windows, rather than a test repeated on a growing sample).
//! The member fraction is estimated on everything since start.
//!
//! The vendor's thread never comes here: a worker takes a cohort's lock once per run of
//! samples of that cohort in a batch.

pub mod stats;

use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts};

use crate::config::{Config, REFERENCE_COHORT};
use crate::error::{Error, Result};
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
}

/// The metric handles of one cohort.
struct CohortSeries {
    p_value: [Gauge; 2],
    windows: [[IntCounter; 3]; 2],
    member_fraction: [Gauge; 3],
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
            })
            .collect();
        let rates = config.calibration().map(|c| {
            let interval = |r: crate::config::Rate| Interval { estimate: r.estimate, low: r.low, high: r.high };
            (interval(c.fpr), interval(c.tpr))
        });
        Ok(Evidence {
            states: names.iter().map(|_| Mutex::default()).collect(),
            series,
            reference: names.iter().position(|&n| n == REFERENCE_COHORT),
            window: config.evidence.window,
            alpha: config.evidence.alpha,
            min_reference: config.evidence.min_reference,
            rates,
            collectors: vec![
                Box::new(p_value),
                Box::new(windows),
                Box::new(fraction),
                Box::new(alpha),
                Box::new(window),
            ],
        })
    }

    /// The gauges and counters, for the auditor's registry.
    pub(crate) fn collectors(&mut self) -> Vec<Box<dyn Collector>> {
        std::mem::take(&mut self.collectors)
    }

    /// Records the scores of samples of one `cohort` (each flagged when at or above the
    /// threshold), completing and testing windows as they fill.
    pub(crate) fn record(&self, cohort: usize, scores: impl Iterator<Item = (f32, bool)>) {
        let mut state = self.states[cohort].lock().unwrap_or_else(|e| e.into_inner());
        for (score, flagged) in scores {
            state.window.add(score);
            state.all.add(score);
            state.window_flagged += flagged as u64;
            state.flagged += flagged as u64;
            if state.window.total() >= self.window {
                self.complete_window(cohort, &mut state);
            }
        }
        self.publish_fraction(cohort, &state);
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

    fn publish_fraction(&self, cohort: usize, state: &CohortState) {
        let f = self.fraction(state);
        for (gauge, value) in self.series[cohort].member_fraction.iter().zip([f.estimate, f.low, f.high]) {
            gauge.set(value);
        }
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
