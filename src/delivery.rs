//! Where a scored or lost sample goes: the ledger, the score histogram, the cohort's
//! evidence, and the vendor's result sink.

use std::sync::{Arc, Mutex};

use crate::cohort::runs;
use crate::conformance::Recorder;
use crate::evidence::Evidence;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::results::{AuditResult, DropReason, Outcome, ResultSink, Verdict};

/// Where results go: the ledger and metrics always, the vendor's sink when one is registered.
pub(crate) struct Delivery {
    pub ledger: Arc<Ledger>,
    pub metrics: Metrics,
    pub evidence: Evidence,
    sink: Option<Arc<dyn ResultSink>>,
    threshold: f32,
    last_error: Mutex<Option<String>>,
    /// Conformance recording, when configured.
    pub recorder: Option<Recorder>,
}

impl Delivery {
    pub(crate) fn new(
        ledger: Arc<Ledger>,
        metrics: Metrics,
        evidence: Evidence,
        sink: Option<Arc<dyn ResultSink>>,
        threshold: f32,
        recorder: Option<Recorder>,
    ) -> Delivery {
        Delivery { ledger, metrics, evidence, sink, threshold, last_error: Mutex::new(None), recorder }
    }

    /// Records scores of samples of `cohorts` (one per sample). A score that is not a
    /// probability (non-finite, or outside [0, 1]) is no verdict: that sample is dropped for
    /// `invalid` (the head's or the backend's error).
    pub(crate) fn scored(&self, ids: &[u64], cohorts: &[u16], scores: &[f32], invalid: DropReason) {
        debug_assert!(ids.len() == scores.len() && ids.len() == cohorts.len());
        if let Some(recorder) = &self.recorder {
            recorder.scores(ids, scores);
        }
        let mut results = Vec::with_capacity(ids.len());
        let mut broken = 0;
        for (cohort, run) in runs(cohorts) {
            let (mut members, mut non_members, mut invalid_here) = (0, 0, 0);
            for (&sample_id, &score) in ids[run.clone()].iter().zip(&scores[run.clone()]) {
                let outcome = if !(0.0..=1.0).contains(&score) {
                    invalid_here += 1;
                    Outcome::Dropped(invalid)
                } else if score >= self.threshold {
                    members += 1;
                    self.metrics.observe_score(cohort, score);
                    Outcome::Audited(Verdict::Member)
                } else {
                    non_members += 1;
                    self.metrics.observe_score(cohort, score);
                    Outcome::Audited(Verdict::NonMember)
                };
                results.push(AuditResult { sample_id, score, outcome });
            }
            self.ledger.audited(cohort, Verdict::Member, members);
            self.ledger.audited(cohort, Verdict::NonMember, non_members);
            self.ledger.dropped(cohort, invalid, invalid_here);
            let valid = scores[run].iter().filter(|s| (0.0..=1.0).contains(*s));
            self.evidence.record(cohort, valid.map(|&s| (s, s >= self.threshold)));
            broken += invalid_here;
        }
        if broken > 0 {
            let who = if invalid == DropReason::BackendError { "backend" } else { "head" };
            self.note_error(format!(
                "the {who} gave {broken} scores that are not probabilities (non-finite or outside [0, 1])"
            ));
        }
        self.deliver(&results);
    }

    /// Records samples of `cohorts` (one per sample) lost after the submit call returned.
    pub(crate) fn dropped(&self, ids: &[u64], cohorts: &[u16], reason: DropReason) {
        debug_assert_eq!(ids.len(), cohorts.len());
        for (cohort, run) in runs(cohorts) {
            self.ledger.dropped(cohort, reason, run.len());
        }
        if let Some(recorder) = &self.recorder {
            recorder.dropped(ids, reason.label());
        }
        if self.sink.is_some() {
            let results: Vec<AuditResult> = ids
                .iter()
                .map(|&sample_id| AuditResult { sample_id, score: f32::NAN, outcome: Outcome::Dropped(reason) })
                .collect();
            self.deliver(&results);
        }
    }

    /// Hands results to the vendor's sink. The ledger has counted them already; a sink that
    /// panics loses nothing but its own delivery, and the worker carries on.
    fn deliver(&self, results: &[AuditResult]) {
        let Some(sink) = &self.sink else { return };
        if let Err(what) = mint_backend_abi::boundary::catch(|| sink.deliver(results)) {
            self.note_error(format!("the result sink panicked on {} results: {what}", results.len()));
        }
    }

    /// Keeps the latest asynchronous failure, for the vendor to read.
    pub(crate) fn note_error(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
