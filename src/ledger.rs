//! The ledger: the one place that counts what happened to every sample handed to the auditor.
//!
//! A sample is *seen* when it is handed over; sampling makes it *submitted* (chosen for audit);
//! from then on it ends exactly once, *audited* with a verdict or *dropped* with a reason, so
//! that `submitted = audited + dropped` once the pipeline is empty. Nothing else in the crate
//! counts samples: the submit path, the workers and the backend host report here, and the
//! metrics and [`Stats`] read from here. Every count is kept per cohort (one row each).

use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec, Opts};

use crate::error::{Error, Result};
use crate::results::{DropReason, Verdict};

/// Counters of an auditor since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Samples handed over, before sampling.
    pub seen: u64,
    /// Samples chosen for audit; each ends audited or dropped.
    pub submitted: u64,
    /// Samples scored at or above the threshold.
    pub audited_member: u64,
    /// Samples scored below the threshold.
    pub audited_non_member: u64,
    /// Dropped samples, indexed like [`DropReason::ALL`].
    pub dropped: [u64; DropReason::ALL.len()],
    /// Samples queued or being scored now.
    pub queue_depth: u64,
}

impl Stats {
    /// Samples scored, whatever the verdict.
    pub fn audited(&self) -> u64 {
        self.audited_member + self.audited_non_member
    }

    /// Samples dropped, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Samples dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }
}

/// The counters of one cohort.
struct Row {
    seen: IntCounter,
    submitted: IntCounter,
    audited: [IntCounter; Verdict::ALL.len()],
    dropped: [IntCounter; DropReason::ALL.len()],
}

impl Row {
    fn stats(&self) -> Stats {
        Stats {
            seen: self.seen.get(),
            submitted: self.submitted.get(),
            audited_member: self.audited[Verdict::Member.index()].get(),
            audited_non_member: self.audited[Verdict::NonMember.index()].get(),
            dropped: DropReason::ALL.map(|r| self.dropped[r.index()].get()),
            queue_depth: 0,
        }
    }
}

/// Every count of what happened to a sample, one row per cohort. The counters are
/// Prometheus' atomics, private to the ledger; the metrics registry exports them as they are.
pub(crate) struct Ledger {
    rows: Vec<Row>,
    collectors: Vec<IntCounterVec>,
}

fn metrics_error(e: prometheus::Error) -> Error {
    Error::config("metrics", e.to_string())
}

impl Ledger {
    /// A ledger for `cohorts`, by index.
    pub(crate) fn new(cohorts: &[&str]) -> Result<Ledger> {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).map_err(metrics_error)
        };
        let seen = vec(
            "mint_samples_seen_total",
            "Samples handed to the auditor, by cohort, before sampling chose which to audit.",
            &["cohort"],
        )?;
        let submitted = vec(
            "mint_samples_submitted_total",
            "Samples chosen for audit, by cohort; each ends counted once as audited or dropped.",
            &["cohort"],
        )?;
        let audited = vec(
            "mint_samples_audited_total",
            "Samples scored by the MINT head, by cohort and verdict.",
            &["cohort", "verdict"],
        )?;
        let dropped = vec(
            "mint_samples_dropped_total",
            "Samples chosen for audit that were not scored, by cohort and reason.",
            &["cohort", "reason"],
        )?;
        // Every labelled series exists at zero from the start.
        let rows = cohorts
            .iter()
            .map(|&c| Row {
                seen: seen.with_label_values(&[c]),
                submitted: submitted.with_label_values(&[c]),
                audited: Verdict::ALL.map(|v| audited.with_label_values(&[c, v.label()])),
                dropped: DropReason::ALL.map(|r| dropped.with_label_values(&[c, r.label()])),
            })
            .collect();
        Ok(Ledger { rows, collectors: vec![seen, submitted, audited, dropped] })
    }

    /// The counters, for the auditor's registry.
    pub(crate) fn collectors(&self) -> Vec<Box<dyn Collector>> {
        self.collectors.iter().map(|c| Box::new(c.clone()) as Box<dyn Collector>).collect()
    }

    /// Cohorts the ledger counts.
    pub(crate) fn cohorts(&self) -> usize {
        self.rows.len()
    }

    /// `n` samples of `cohort` handed over, of which `chosen` were chosen for audit: each of
    /// those must later reach [`Ledger::audited`] or [`Ledger::dropped`] exactly once.
    pub(crate) fn received(&self, cohort: usize, n: usize, chosen: usize) {
        self.rows[cohort].seen.inc_by(n as u64);
        self.rows[cohort].submitted.inc_by(chosen as u64);
    }

    /// `n` submitted samples of `cohort` scored with `verdict`.
    pub(crate) fn audited(&self, cohort: usize, verdict: Verdict, n: usize) {
        if n > 0 {
            self.rows[cohort].audited[verdict.index()].inc_by(n as u64);
        }
    }

    /// `n` submitted samples of `cohort` lost for `reason`.
    pub(crate) fn dropped(&self, cohort: usize, reason: DropReason, n: usize) {
        if n > 0 {
            self.rows[cohort].dropped[reason.index()].inc_by(n as u64);
        }
    }

    /// The counts of `cohort` now; `queue_depth` is the caller's to fill.
    pub(crate) fn cohort_stats(&self, cohort: usize) -> Stats {
        self.rows[cohort].stats()
    }

    /// The counts of every cohort together; `queue_depth` is the caller's to fill.
    pub(crate) fn stats(&self) -> Stats {
        self.rows.iter().map(Row::stats).fold(Stats::default(), |mut a, s| {
            a.seen += s.seen;
            a.submitted += s.submitted;
            a.audited_member += s.audited_member;
            a.audited_non_member += s.audited_non_member;
            for (x, y) in a.dropped.iter_mut().zip(s.dropped) {
                *x += y;
            }
            a
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_ends_once() {
        let ledger = Ledger::new(&["default", "reference"]).unwrap();
        ledger.received(0, 10, 7);
        ledger.audited(0, Verdict::Member, 2);
        ledger.audited(0, Verdict::NonMember, 3);
        ledger.dropped(0, DropReason::QueueFull, 1);
        ledger.dropped(0, DropReason::Shutdown, 1);
        ledger.received(1, 4, 4);
        ledger.audited(1, Verdict::NonMember, 4);
        let s = ledger.stats();
        assert_eq!((s.seen, s.submitted, s.audited(), s.dropped_total()), (14, 11, 9, 2));
        assert_eq!(s.dropped(DropReason::Shutdown), 1);
        assert_eq!(s.submitted, s.audited() + s.dropped_total());
        let r = ledger.cohort_stats(1);
        assert_eq!((r.seen, r.audited_non_member, r.dropped_total()), (4, 4, 0));
    }
}
