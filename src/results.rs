//! What happened to a sample, and how the vendor hears of it.

/// Why a sample that entered the pipeline was not audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The queue to the head worker was full.
    QueueFull,
    /// The call's tensors were malformed (rank, shape, channels, strides), or could not be read.
    InvalidInput,
    /// The sample carried NaN or infinite values.
    NonFinite,
    /// The CNN path's copy budget was exhausted.
    OverBudget,
    /// The head failed on the batch, or gave a non-finite score.
    HeadError,
    /// The backend plugin failed on the batch.
    BackendError,
    /// The auditor closed before the sample could be scored.
    Shutdown,
    /// The sample was submitted after the auditor closed.
    Closed,
}

impl DropReason {
    /// Every reason, in the order of [`Stats::dropped`](crate::Stats::dropped).
    pub const ALL: [DropReason; 8] = [
        DropReason::QueueFull,
        DropReason::InvalidInput,
        DropReason::NonFinite,
        DropReason::OverBudget,
        DropReason::HeadError,
        DropReason::BackendError,
        DropReason::Shutdown,
        DropReason::Closed,
    ];

    /// The `reason` label value of `mint_samples_dropped_total`.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::InvalidInput => "invalid_input",
            DropReason::NonFinite => "non_finite",
            DropReason::OverBudget => "over_budget",
            DropReason::HeadError => "head_error",
            DropReason::BackendError => "backend_error",
            DropReason::Shutdown => "shutdown",
            DropReason::Closed => "closed",
        }
    }

    /// Position in [`DropReason::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The head's decision on one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The score is at or above the threshold.
    Member,
    /// The score is below the threshold.
    NonMember,
}

impl Verdict {
    /// Both verdicts, in the order the ledger keeps them.
    pub const ALL: [Verdict; 2] = [Verdict::Member, Verdict::NonMember];

    /// The `verdict` label value of `mint_samples_audited_total`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Member => "member",
            Verdict::NonMember => "non_member",
        }
    }

    /// Position in [`Verdict::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

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
    /// The id the vendor gave the sample.
    pub sample_id: u64,
    /// Membership score in [0, 1]; NaN when the sample was dropped.
    pub score: f32,
    /// What happened to it.
    pub outcome: Outcome,
}

/// Receives results on a worker thread, in batches. Must be quick: the worker waits for it.
pub trait ResultSink: Send + Sync + 'static {
    /// Called with each batch of results, on a worker thread.
    fn deliver(&self, results: &[AuditResult]);
}

impl<F: Fn(&[AuditResult]) + Send + Sync + 'static> ResultSink for F {
    fn deliver(&self, results: &[AuditResult]) {
        self(results)
    }
}
