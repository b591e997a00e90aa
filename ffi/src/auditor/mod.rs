//! The auditor handle, the types its functions share, and the functions by topic: `lifecycle`,
//! `submit`, `infer`, `metrics`, `evidence`.

use std::ffi::{c_char, c_void};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mint_audit::{
    AuditResult, Auditor, CloseReport, Cohort, CohortEvidence, Config, DropReason, Outcome, ResultSink, Stats, Verdict,
};

use crate::status::{
    boundary, mint_status, Failure, MINT_ERR_BUFFER_TOO_SMALL, MINT_ERR_INVALID_ARGUMENT, MINT_ERR_TIMED_OUT,
};
use crate::tensor::{self, mint_tensor, mint_tokens};
use mint_backend_abi::args::{try_mut, try_ref, try_slice, try_slice_mut, try_str, write_opt};

// In the order of an auditor's life, which the header follows (cbindgen reads the modules in
// order; blank lines keep rustfmt from sorting them).
mod lifecycle;

mod submit;

mod infer;

mod metrics;

mod evidence;

pub use evidence::*;
pub use infer::*;
pub use lifecycle::*;
pub use metrics::*;
pub use submit::*;

/// An auditor: created by `mint_auditor_new*`, released by `mint_auditor_free`.
///
/// Thread safety: every function taking a `const mint_auditor *` may be called from any
/// number of threads at once. `mint_auditor_free` must not overlap any other call on the
/// same handle.
#[allow(non_camel_case_types)]
pub struct mint_auditor {
    inner: Auditor,
}

/// The head judged the sample not a member (score below the threshold).
pub const MINT_OUTCOME_NON_MEMBER: u32 = 0;
/// The head judged the sample a member (score at or above the threshold).
pub const MINT_OUTCOME_MEMBER: u32 = 1;
/// Dropped: the head failed on its batch, or gave a non-finite score.
pub const MINT_OUTCOME_DROPPED_HEAD_ERROR: u32 = 2;
/// Dropped: the backend plugin failed on its batch.
pub const MINT_OUTCOME_DROPPED_BACKEND_ERROR: u32 = 3;
/// Dropped: still queued when `mint_auditor_close`'s deadline passed.
pub const MINT_OUTCOME_DROPPED_SHUTDOWN: u32 = 4;

/// The audit of one sample, as delivered to the result callback.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct mint_sample_result {
    pub sample_id: u64,
    /// Membership score in [0, 1]; NaN when dropped.
    pub score: f32,
    /// `MINT_OUTCOME_*`.
    pub outcome: u32,
}

/// Receives a batch of results. Called on an auditor worker thread (never the caller's),
/// one batch at a time per worker; `results` is valid during the call only. It must return
/// quickly; `mint_auditor_close` and `mint_auditor_free` called from it on its own auditor
/// refuse with `MINT_ERR_REENTRANT` (they would wait for the thread the callback runs on).
#[allow(non_camel_case_types)]
pub type mint_results_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, results: *const mint_sample_result, count: usize)>;

/// Releases `userdata`.
#[allow(non_camel_case_types)]
pub type mint_free_fn = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// Where results go. The auditor owns `userdata` from the `mint_auditor_new*` call on, and
/// calls `free_userdata` (when not NULL) exactly once: when the auditor is freed, or before
/// `mint_auditor_new*` returns an error, or, when a callback was still running as closing
/// gave up waiting for it (`MINT_ERR_TIMED_OUT`), on that worker once the callback returns.
/// `userdata` is used from worker threads.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct mint_result_sink {
    pub on_results: mint_results_fn,
    pub userdata: *mut c_void,
    pub free_userdata: mint_free_fn,
}

/// What one submit call did. Filled on success and on failure.
#[repr(C)]
#[derive(Default)]
#[allow(non_camel_case_types)]
pub struct mint_submit_report {
    /// Samples of the call the auditor took in and counted: the call's `n`, or 0 when the
    /// call could not be read at all (a NULL auditor or `sample_ids`), as its counters say.
    pub seen: usize,
    /// Samples chosen for audit by sampling.
    pub chosen: usize,
    /// Samples queued for the head.
    pub accepted: usize,
}

/// Counters since the auditor was created. Once the auditor is closed,
/// `submitted == audited_member + audited_non_member + (sum of dropped_*)`.
#[repr(C)]
#[derive(Default)]
#[allow(non_camel_case_types)]
pub struct mint_stats {
    pub seen: u64,
    pub submitted: u64,
    pub audited_member: u64,
    pub audited_non_member: u64,
    pub dropped_queue_full: u64,
    pub dropped_invalid_input: u64,
    pub dropped_non_finite: u64,
    pub dropped_over_budget: u64,
    pub dropped_head_error: u64,
    pub dropped_backend_error: u64,
    pub dropped_shutdown: u64,
    pub dropped_closed: u64,
    /// Samples queued or being scored at the time of the call.
    pub queue_depth: u64,
}

/// What closing did.
#[repr(C)]
#[derive(Default)]
#[allow(non_camel_case_types)]
pub struct mint_close_report {
    /// Samples scored while closing.
    pub drained: u64,
    /// Samples still queued at the deadline: dropped as shutdown, and each delivered to the
    /// result callback with `MINT_OUTCOME_DROPPED_SHUTDOWN` (counted but not delivered when
    /// the callback itself held a worker past the deadline: `MINT_ERR_TIMED_OUT`).
    pub abandoned: u64,
    /// The counters when closing returned; final (`submitted` = audited + dropped) unless
    /// closing returned `MINT_ERR_TIMED_OUT`.
    pub stats: mint_stats,
}

impl From<Stats> for mint_stats {
    fn from(s: Stats) -> Self {
        mint_stats {
            seen: s.seen,
            submitted: s.submitted,
            audited_member: s.audited_member,
            audited_non_member: s.audited_non_member,
            dropped_queue_full: s.dropped(DropReason::QueueFull),
            dropped_invalid_input: s.dropped(DropReason::InvalidInput),
            dropped_non_finite: s.dropped(DropReason::NonFinite),
            dropped_over_budget: s.dropped(DropReason::OverBudget),
            dropped_head_error: s.dropped(DropReason::HeadError),
            dropped_backend_error: s.dropped(DropReason::BackendError),
            dropped_shutdown: s.dropped(DropReason::Shutdown),
            dropped_closed: s.dropped(DropReason::Closed),
            queue_depth: s.queue_depth,
        }
    }
}

impl From<CloseReport> for mint_close_report {
    fn from(r: CloseReport) -> Self {
        mint_close_report { drained: r.drained, abandoned: r.abandoned, stats: r.stats.into() }
    }
}

/// The vendor's callback, carried to worker threads.
struct CSink {
    on_results: mint_results_fn,
    userdata: *mut c_void,
    free_userdata: mint_free_fn,
}

// SAFETY: the header tells the caller that `userdata` is used from worker threads; making it
// safe to use there is the caller's part of the contract.
unsafe impl Send for CSink {}
// SAFETY: as for `Send`; the sink is only called, never mutated.
unsafe impl Sync for CSink {}

impl ResultSink for CSink {
    fn deliver(&self, results: &[AuditResult]) {
        let Some(f) = self.on_results else { return };
        let out: Vec<mint_sample_result> = results
            .iter()
            .map(|r| mint_sample_result {
                sample_id: r.sample_id,
                score: r.score,
                outcome: match r.outcome {
                    Outcome::Audited(Verdict::Member) => MINT_OUTCOME_MEMBER,
                    Outcome::Audited(Verdict::NonMember) => MINT_OUTCOME_NON_MEMBER,
                    Outcome::Dropped(DropReason::BackendError) => MINT_OUTCOME_DROPPED_BACKEND_ERROR,
                    Outcome::Dropped(DropReason::Shutdown) => MINT_OUTCOME_DROPPED_SHUTDOWN,
                    Outcome::Dropped(_) => MINT_OUTCOME_DROPPED_HEAD_ERROR,
                },
            })
            .collect();
        // SAFETY: the caller registered `f` for exactly this signature.
        unsafe { f(self.userdata, out.as_ptr(), out.len()) }
    }
}

impl Drop for CSink {
    fn drop(&mut self) {
        if let Some(free) = self.free_userdata {
            // SAFETY: called exactly once, as the header promises.
            unsafe { free(self.userdata) }
        }
    }
}

/// # Safety
/// `a` is NULL or a live handle.
pub(super) unsafe fn auditor_ref<'a>(a: *const mint_auditor) -> Result<&'a Auditor, Failure> {
    // SAFETY: forwarded from the caller.
    Ok(&unsafe { try_ref(a, "auditor") }?.inner)
}

/// The cohort `mint_auditor_submit` and `mint_auditor_infer` use: `default`, numbered 0.
pub const MINT_COHORT_DEFAULT: u32 = 0;

/// Writes `text` and a NUL into `buf` (`capacity` bytes). `*out_len` receives the bytes
/// needed including the NUL, on success and on `MINT_ERR_BUFFER_TOO_SMALL` alike, so a call
/// with `capacity` 0 (and `buf` NULL) asks for the size.
///
/// # Safety
/// `out_len` is NULL or writable; `buf` is NULL or holds `capacity` writable bytes.
pub(super) unsafe fn write_text(
    text: &str,
    buf: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
) -> Result<(), Failure> {
    // SAFETY: forwarded from the caller.
    let out_len = unsafe { try_mut(out_len, "out_len") }?;
    let needed = text.len() + 1;
    *out_len = needed;
    if capacity < needed {
        return Err(Failure::new(MINT_ERR_BUFFER_TOO_SMALL, format!("{needed} bytes needed, {capacity} given")));
    }
    // SAFETY: `buf` holds `capacity` writable bytes (the caller's promise).
    let buf = unsafe { try_slice_mut(buf as *mut u8, capacity, "buf") }?;
    buf[..text.len()].copy_from_slice(text.as_bytes());
    buf[text.len()] = 0;
    Ok(())
}

/// # Safety
/// `out` is NULL or writable.
pub(super) unsafe fn write_report(out: *mut mint_submit_report, seen: usize, chosen: usize, accepted: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { write_opt(out, mint_submit_report { seen, chosen, accepted }) }
}
