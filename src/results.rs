//! What the auditor tells the vendor about each sample, and how.

use crate::metrics::{DropReason, Verdict};

/// How one submitted sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Scored by the head.
    Audited(Verdict),
    /// Lost after the submit call returned (head or backend failure, shutdown).
    Dropped(DropReason),
}

/// The audit of one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditResult {
    pub sample_id: u64,
    /// Membership score in [0, 1]; NaN when the sample was dropped.
    pub score: f32,
    pub outcome: Outcome,
}

/// Receives results on a worker thread, in batches. Must be quick: the worker waits for it.
pub trait ResultSink: Send + Sync + 'static {
    fn deliver(&self, results: &[AuditResult]);
}

impl<F: Fn(&[AuditResult]) + Send + Sync + 'static> ResultSink for F {
    fn deliver(&self, results: &[AuditResult]) {
        self(results)
    }
}
