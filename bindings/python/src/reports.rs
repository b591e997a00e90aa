//! What the auditor reports, as typed, read-only Python objects.

use std::collections::BTreeMap;

use mint_audit::{DropReason, Outcome};
use pyo3::prelude::*;

/// Counters of an auditor (or of one cohort) since it was created.
///
/// `submitted == audited + dropped_total` once nothing is queued (`queue_depth == 0`).
#[pyclass(module = "mint_audit", frozen, get_all)]
#[derive(Clone)]
pub struct Stats {
    /// Samples handed over, before sampling.
    pub seen: u64,
    /// Samples chosen for audit; each ends audited or dropped.
    pub submitted: u64,
    /// Samples scored at or above the threshold.
    pub audited_member: u64,
    /// Samples scored below the threshold.
    pub audited_non_member: u64,
    /// Samples scored, whatever the verdict.
    pub audited: u64,
    /// Samples dropped, by reason (`queue_full`, `invalid_input`, ...; every reason present).
    pub dropped: BTreeMap<String, u64>,
    /// Samples dropped, whatever the reason.
    pub dropped_total: u64,
    /// Samples queued or being scored now.
    pub queue_depth: u64,
}

impl From<mint_audit::Stats> for Stats {
    fn from(s: mint_audit::Stats) -> Stats {
        Stats {
            seen: s.seen,
            submitted: s.submitted,
            audited_member: s.audited_member,
            audited_non_member: s.audited_non_member,
            audited: s.audited(),
            dropped: DropReason::ALL.iter().map(|&r| (r.label().to_string(), s.dropped(r))).collect(),
            dropped_total: s.dropped_total(),
            queue_depth: s.queue_depth,
        }
    }
}

#[pymethods]
impl Stats {
    fn __repr__(&self) -> String {
        format!(
            "Stats(seen={}, submitted={}, audited_member={}, audited_non_member={}, dropped_total={}, queue_depth={})",
            self.seen,
            self.submitted,
            self.audited_member,
            self.audited_non_member,
            self.dropped_total,
            self.queue_depth
        )
    }
}

/// What closing the auditor did.
#[pyclass(module = "mint_audit", frozen, get_all)]
pub struct CloseReport {
    /// Samples scored while closing.
    pub drained: u64,
    /// Samples still queued at the deadline, dropped as `shutdown`.
    pub abandoned: u64,
    /// The counters when closing returned.
    pub stats: Stats,
    /// Workers still inside the result callback (or a backend) past the deadline and the
    /// grace period; each stops on its own once that call returns.
    pub workers_busy: usize,
    /// Samples such workers held, not yet counted, when closing returned.
    pub in_flight: u64,
    /// Whether the deadline passed with work left (`workers_busy > 0`): the C API's
    /// `MINT_ERR_TIMED_OUT`.
    pub timed_out: bool,
}

impl From<mint_audit::CloseReport> for CloseReport {
    fn from(r: mint_audit::CloseReport) -> CloseReport {
        CloseReport {
            drained: r.drained,
            abandoned: r.abandoned,
            stats: r.stats.into(),
            workers_busy: r.workers_busy,
            in_flight: r.in_flight,
            timed_out: r.workers_busy > 0,
        }
    }
}

#[pymethods]
impl CloseReport {
    fn __repr__(&self) -> String {
        format!(
            "CloseReport(drained={}, abandoned={}, workers_busy={}, in_flight={}, stats={})",
            self.drained,
            self.abandoned,
            self.workers_busy,
            self.in_flight,
            self.stats.__repr__()
        )
    }
}

/// What one `submit` call did.
#[pyclass(module = "mint_audit", frozen, get_all)]
pub struct SubmitReport {
    /// Samples in the call.
    pub seen: usize,
    /// Samples chosen for audit by sampling.
    pub chosen: usize,
    /// Samples queued for the head.
    pub accepted: usize,
}

impl From<mint_audit::SubmitReport> for SubmitReport {
    fn from(r: mint_audit::SubmitReport) -> SubmitReport {
        SubmitReport { seen: r.seen, chosen: r.chosen, accepted: r.accepted }
    }
}

#[pymethods]
impl SubmitReport {
    fn __repr__(&self) -> String {
        format!("SubmitReport(seen={}, chosen={}, accepted={})", self.seen, self.chosen, self.accepted)
    }
}

/// The audit of one sample, as the result callback receives it.
#[pyclass(module = "mint_audit", frozen, get_all)]
pub struct AuditResult {
    /// The id the caller gave the sample.
    pub sample_id: u64,
    /// Membership score in [0, 1]; NaN when the sample was dropped.
    pub score: f32,
    /// `"member"` or `"non_member"` when scored, `None` when dropped.
    pub verdict: Option<&'static str>,
    /// Why the sample was dropped (`"shutdown"`, `"head_error"`, ...), `None` when scored.
    pub dropped: Option<&'static str>,
}

impl From<&mint_audit::AuditResult> for AuditResult {
    fn from(r: &mint_audit::AuditResult) -> AuditResult {
        let (verdict, dropped) = match r.outcome {
            Outcome::Audited(v) => (Some(v.label()), None),
            Outcome::Dropped(d) => (None, Some(d.label())),
        };
        AuditResult { sample_id: r.sample_id, score: r.score, verdict, dropped }
    }
}

#[pymethods]
impl AuditResult {
    /// Whether the sample was scored at or above the threshold.
    #[getter]
    fn member(&self) -> bool {
        self.verdict == Some("member")
    }

    fn __repr__(&self) -> String {
        match (self.verdict, self.dropped) {
            (Some(v), _) => format!("AuditResult(sample_id={}, score={}, verdict='{v}')", self.sample_id, self.score),
            (None, d) => format!("AuditResult(sample_id={}, dropped='{}')", self.sample_id, d.unwrap_or("?")),
        }
    }
}
