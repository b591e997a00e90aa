//! The ledger: the one place that counts what happened to every sample handed to the auditor.
//!
//! A sample is *seen* when it is handed over; sampling makes it *submitted* (chosen for audit);
//! from then on it ends exactly once, *audited* with a verdict or *dropped* with a reason, so
//! that `submitted = audited + dropped` once the pipeline is empty. Nothing else in the crate
//! counts samples: the submit path, the workers and the backend host report here, and the
//! metrics and [`Stats`] read from here. (Cohorts add one index to each array.)

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

/// Every count of what happened to a sample. The counters are Prometheus' atomics, private to
/// the ledger; the metrics registry exports them as they are.
pub(crate) struct Ledger {
    seen: IntCounter,
    submitted: IntCounter,
    audited_vec: IntCounterVec,
    audited: [IntCounter; Verdict::ALL.len()],
    dropped_vec: IntCounterVec,
    dropped: [IntCounter; DropReason::ALL.len()],
}

fn metrics_error(e: prometheus::Error) -> Error {
    Error::config("metrics", e.to_string())
}

impl Ledger {
    pub(crate) fn new() -> Result<Ledger> {
        let seen = IntCounter::new(
            "mint_samples_seen_total",
            "Samples handed to the auditor, before sampling chose which to audit.",
        )
        .map_err(metrics_error)?;
        let submitted = IntCounter::new(
            "mint_samples_submitted_total",
            "Samples chosen for audit; each ends counted once as audited or dropped.",
        )
        .map_err(metrics_error)?;
        let audited_vec = IntCounterVec::new(
            Opts::new("mint_samples_audited_total", "Samples scored by the MINT head, by verdict."),
            &["verdict"],
        )
        .map_err(metrics_error)?;
        let dropped_vec = IntCounterVec::new(
            Opts::new("mint_samples_dropped_total", "Samples chosen for audit that were not scored, by reason."),
            &["reason"],
        )
        .map_err(metrics_error)?;
        // Every labelled series exists at zero from the start.
        let audited = Verdict::ALL.map(|v| audited_vec.with_label_values(&[v.label()]));
        let dropped = DropReason::ALL.map(|r| dropped_vec.with_label_values(&[r.label()]));
        Ok(Ledger { seen, submitted, audited_vec, audited, dropped_vec, dropped })
    }

    /// The counters, for the auditor's registry.
    pub(crate) fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.seen.clone()),
            Box::new(self.submitted.clone()),
            Box::new(self.audited_vec.clone()),
            Box::new(self.dropped_vec.clone()),
        ]
    }

    /// `n` samples handed over, of which `chosen` were chosen for audit: each of those must
    /// later reach [`Ledger::audited`] or [`Ledger::dropped`] exactly once.
    pub(crate) fn received(&self, n: usize, chosen: usize) {
        self.seen.inc_by(n as u64);
        self.submitted.inc_by(chosen as u64);
    }

    /// `n` submitted samples scored with `verdict`.
    pub(crate) fn audited(&self, verdict: Verdict, n: usize) {
        self.audited[verdict.index()].inc_by(n as u64);
    }

    /// `n` submitted samples lost for `reason`.
    pub(crate) fn dropped(&self, reason: DropReason, n: usize) {
        self.dropped[reason.index()].inc_by(n as u64);
    }

    /// The counts now; `queue_depth` is the caller's to fill.
    pub(crate) fn stats(&self) -> Stats {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_ends_once() {
        let ledger = Ledger::new().unwrap();
        ledger.received(10, 7);
        ledger.audited(Verdict::Member, 2);
        ledger.audited(Verdict::NonMember, 3);
        ledger.dropped(DropReason::QueueFull, 1);
        ledger.dropped(DropReason::Shutdown, 1);
        let s = ledger.stats();
        assert_eq!((s.seen, s.submitted, s.audited(), s.dropped_total()), (10, 7, 5, 2));
        assert_eq!(s.dropped(DropReason::Shutdown), 1);
        assert_eq!(s.submitted, s.audited() + s.dropped_total());
    }
}
