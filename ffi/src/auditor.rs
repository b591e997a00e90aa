//! The auditor handle and its functions.

use std::ffi::{c_char, c_void};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mint_audit::{
    AuditResult, Auditor, CloseReport, Cohort, CohortEvidence, Config, DropReason, Outcome, ResultSink, Stats, Verdict,
};

use crate::args::{try_mut, try_ref, try_slice, try_slice_mut, try_str, write_opt};
use crate::status::{
    boundary, mint_status, Failure, MINT_ERR_BUFFER_TOO_SMALL, MINT_ERR_INVALID_ARGUMENT, MINT_ERR_TIMED_OUT,
};
use crate::tensor::{self, mint_tensor, mint_tokens};

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
    /// Samples in the call.
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
/// `sink` is NULL or points to a valid `mint_result_sink`.
unsafe fn sink_arg(sink: *const mint_result_sink) -> Option<Arc<dyn ResultSink>> {
    // SAFETY: forwarded from the caller.
    let s = unsafe { try_ref(sink, "sink") }.ok()?;
    // Taking ownership now means `free_userdata` runs when this is dropped: on failure
    // below, or when the auditor goes.
    Some(Arc::new(CSink { on_results: s.on_results, userdata: s.userdata, free_userdata: s.free_userdata }))
}

fn create(
    config: Result<Config, mint_audit::Error>,
    sink: Option<Arc<dyn ResultSink>>,
    out: &mut *mut mint_auditor,
) -> Result<(), Failure> {
    let auditor = match sink {
        Some(sink) => Auditor::with_sink(config?, sink)?,
        None => Auditor::new(config?)?,
    };
    *out = Box::into_raw(Box::new(mint_auditor { inner: auditor }));
    Ok(())
}

/// Creates an auditor from a JSON configuration (relative paths in it are resolved against
/// the current directory). `sink` may be NULL (results then reach the metrics only); its
/// contents are copied. On success `*out` owns a new handle: release it with
/// `mint_auditor_free`. On failure `*out` is left untouched and `mint_last_error()` says why
/// (a bad field is named; a head whose sha256 differs names the file).
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_new(
    config_json: *const c_char,
    sink: *const mint_result_sink,
    out: *mut *mut mint_auditor,
) -> mint_status {
    // SAFETY: NULL or a valid struct, per the header.
    let sink = unsafe { sink_arg(sink) };
    boundary("mint_auditor_new", || {
        // SAFETY: pointers as documented above.
        let (out, json) = unsafe { (try_mut(out, "out")?, try_str(config_json, "config_json")?) };
        let cwd = std::env::current_dir().unwrap_or_default();
        create(Config::from_json(json, &cwd), sink, out)
    })
}

/// Like `mint_auditor_new`, reading the configuration from a file; relative paths in it are
/// resolved against the file's directory.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_new_from_file(
    path: *const c_char,
    sink: *const mint_result_sink,
    out: *mut *mut mint_auditor,
) -> mint_status {
    // SAFETY: NULL or a valid struct, per the header.
    let sink = unsafe { sink_arg(sink) };
    boundary("mint_auditor_new_from_file", || {
        // SAFETY: pointers as documented above.
        let (out, path) = unsafe { (try_mut(out, "out")?, try_str(path, "path")?) };
        create(Config::from_path(Path::new(path)), sink, out)
    })
}

/// Closes the auditor if it is still open (letting the queue drain for up to 5 s), stops its
/// metrics endpoint, releases the result sink's userdata, and frees the handle. Bounded: a
/// result callback that does not return keeps only its own worker (and the userdata, released
/// when it returns), never this call, which returns within 5 s plus `MINT_CLOSE_GRACE_MS`
/// (plus, with the Triton plugin, a request already on the wire: its `timeout_ms`).
/// `mint_auditor_free(NULL)` does nothing. Called from the auditor's own result callback it
/// frees nothing (the callback runs on a worker that freeing waits for): the handle stays
/// valid, and `mint_last_error()` says why (`MINT_ERR_REENTRANT`).
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_free(auditor: *mut mint_auditor) {
    if auditor.is_null() {
        return;
    }
    // SAFETY: a handle from `mint_auditor_new*`, not yet freed.
    if unsafe { &*auditor }.inner.on_own_worker() {
        let _ = boundary("mint_auditor_free", || Err(mint_audit::Error::Reentrant("mint_auditor_free").into()));
        return;
    }
    // SAFETY: a handle from `mint_auditor_new*`, freed once, with no call overlapping.
    let boxed = unsafe { Box::from_raw(auditor) };
    let _ = boundary("mint_auditor_free", move || {
        drop(boxed);
        Ok(())
    });
}

/// # Safety
/// `a` is NULL or a live handle.
unsafe fn auditor_ref<'a>(a: *const mint_auditor) -> Result<&'a Auditor, Failure> {
    // SAFETY: forwarded from the caller.
    unsafe { try_ref(a, "auditor") }.map(|a| &a.inner)
}

/// # Safety
/// `out` is NULL or writable.
unsafe fn write_report(out: *mut mint_submit_report, seen: usize, chosen: usize, accepted: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { write_opt(out, mint_submit_report { seen, chosen, accepted }) }
}

/// The cohort `mint_auditor_submit` and `mint_auditor_infer` use: `default`, numbered 0.
pub const MINT_COHORT_DEFAULT: u32 = 0;

/// Hands over one batch: `n` sample ids and one tensor per configured tap, in the
/// configuration's order (`n_taps` must equal the number of taps). Reads the samples chosen
/// by sampling once (reducing maps to per-channel maxima, or copying the CNN tap), queues
/// them without blocking, and returns; nothing is retained after the call. The samples
/// belong to the `default` cohort (`mint_auditor_submit_cohort` names another).
///
/// Errors: `MINT_ERR_INVALID_INPUT` (a descriptor or shape does not fit its tap: the batch is
/// dropped and counted), `MINT_ERR_NON_FINITE` (those samples were dropped and counted, the
/// others accepted), `MINT_ERR_QUEUE_FULL` / `MINT_ERR_OVER_BUDGET` (dropped and counted),
/// `MINT_ERR_CLOSED`. `report` may be NULL; when given it is filled whatever the outcome.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_submit(
    auditor: *const mint_auditor,
    sample_ids: *const u64,
    n: usize,
    taps: *const mint_tensor,
    n_taps: usize,
    report: *mut mint_submit_report,
) -> mint_status {
    boundary("mint_auditor_submit", || {
        // SAFETY: forwarded from the caller, per the header.
        unsafe { submit(auditor, Cohort::DEFAULT, sample_ids, n, taps, n_taps, report) }
    })
}

/// `mint_auditor_submit` for samples of `cohort` (a number from `mint_auditor_cohort`):
/// they are counted, and tested as evidence, in that cohort. A cohort the configuration does
/// not declare loses the batch with `MINT_ERR_INVALID_INPUT`, counted as `invalid_input` in
/// the `default` cohort. Since ABI 1.2.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_submit_cohort(
    auditor: *const mint_auditor,
    cohort: u32,
    sample_ids: *const u64,
    n: usize,
    taps: *const mint_tensor,
    n_taps: usize,
    report: *mut mint_submit_report,
) -> mint_status {
    boundary("mint_auditor_submit_cohort", || {
        // SAFETY: forwarded from the caller, per the header.
        unsafe { submit(auditor, Cohort::from_number(cohort), sample_ids, n, taps, n_taps, report) }
    })
}

/// `mint_auditor_submit_cohort` with the valid tokens of token-sequence taps: `tokens` is NULL
/// (every position of every sequence counts) or `n_taps` entries, one per tap in the same
/// order, each all NULL except for `MINT_FORM_SEQUENCE` tensors with padding and the token
/// ids of `token_logits` taps. Lengths outside `1..=T`, a sample without a valid token (for
/// logits: without two consecutive ones), an id outside the vocabulary where it is scored,
/// missing ids for logits, or lengths or ids given for another form lose the batch with
/// `MINT_ERR_INVALID_INPUT`, counted as `invalid_input`. `cohort` is a number
/// from `mint_auditor_cohort` (`MINT_COHORT_DEFAULT` for ordinary traffic). Since ABI 1.4.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_submit_tokens(
    auditor: *const mint_auditor,
    cohort: u32,
    sample_ids: *const u64,
    n: usize,
    taps: *const mint_tensor,
    tokens: *const mint_tokens,
    n_taps: usize,
    report: *mut mint_submit_report,
) -> mint_status {
    boundary("mint_auditor_submit_tokens", || {
        // SAFETY: forwarded from the caller, per the header.
        unsafe { submit_with(auditor, Cohort::from_number(cohort), sample_ids, n, taps, tokens, n_taps, report) }
    })
}

/// # Safety
/// As `mint_auditor_submit` documents its arguments.
unsafe fn submit(
    auditor: *const mint_auditor,
    cohort: Cohort,
    sample_ids: *const u64,
    n: usize,
    taps: *const mint_tensor,
    n_taps: usize,
    report: *mut mint_submit_report,
) -> Result<(), Failure> {
    // SAFETY: forwarded from the caller.
    unsafe { submit_with(auditor, cohort, sample_ids, n, taps, std::ptr::null(), n_taps, report) }
}

/// # Safety
/// As `mint_auditor_submit_tokens` documents its arguments.
#[allow(clippy::too_many_arguments)]
unsafe fn submit_with(
    auditor: *const mint_auditor,
    cohort: Cohort,
    sample_ids: *const u64,
    n: usize,
    taps: *const mint_tensor,
    tokens: *const mint_tokens,
    n_taps: usize,
    report: *mut mint_submit_report,
) -> Result<(), Failure> {
    // SAFETY: `report` is NULL or writable, per the header.
    unsafe { write_report(report, n, 0, 0) };
    // SAFETY: NULL or a live handle, per the header.
    let a = unsafe { auditor_ref(auditor) }?;
    // SAFETY: `n` readable ids, per the header.
    let ids = unsafe { try_slice(sample_ids, n, "sample_ids") }?;
    // A batch whose descriptors cannot be read is handed over as such: the core counts it.
    let mut views = smallvec::SmallVec::<[mint_audit::TensorView<'_>; 8]>::new();
    // SAFETY: `taps` is NULL or `n_taps` descriptors, `tokens` NULL or `n_taps` entries, per the header.
    let decoded = unsafe { decode(&mut views, taps, tokens, n_taps) };
    let readable = match &decoded {
        Ok(()) => Ok(&views[..]),
        Err(f) => Err(mint_audit::Error::InvalidInput(f.message.clone())),
    };
    match a.submit_decoded(cohort, ids, readable) {
        Ok(r) => {
            // SAFETY: as documented above.
            unsafe { write_report(report, r.seen, r.chosen, r.accepted) };
            Ok(())
        }
        Err(e) => {
            if let mint_audit::Error::NonFinite { rejected, total, .. } = &e {
                // SAFETY: as documented above.
                unsafe { write_report(report, n, *total, total - rejected) };
            }
            // The decoding failure keeps its own status (a NULL `taps`, a bad descriptor).
            Err(decoded.err().unwrap_or_else(|| e.into()))
        }
    }
}

/// Turns the C descriptors into views, or says which one cannot be read.
///
/// # Safety
/// `taps` is NULL or points to `n_taps` descriptors, and `tokens` is NULL or points to `n_taps`
/// entries, whose pointers are valid for `'a`.
unsafe fn decode<'a>(
    views: &mut smallvec::SmallVec<[mint_audit::TensorView<'a>; 8]>,
    taps: *const mint_tensor,
    tokens: *const mint_tokens,
    n_taps: usize,
) -> Result<(), Failure> {
    // SAFETY: forwarded from the caller.
    let descriptors = unsafe { try_slice(taps, n_taps, "taps") }?;
    for (i, d) in descriptors.iter().enumerate() {
        // SAFETY: forwarded from the caller.
        let view = unsafe { tensor::view(d, i) }?;
        // SAFETY: entry `i` of `n_taps`, when `tokens` is not NULL (forwarded from the caller).
        let entry = if tokens.is_null() { tokens } else { unsafe { tokens.add(i) } };
        // SAFETY: forwarded from the caller.
        views.push(unsafe { tensor::with_tokens(view, entry, i) }?);
    }
    Ok(())
}

/// For vendors who let mint-audit run their model: runs the audited model of the
/// configuration (`model.onnx`, `model.input_shape`, and a `tensor` per tap) on `n` samples
/// (`inputs`: `inputs_len` floats, `n ×` the input sample size, row-major), writes the
/// model's first output into `outputs` (`outputs_len` floats, `n ×` its size), and audits
/// the taps as `mint_auditor_submit` does, on this thread, in the `default` cohort. The model
/// is compiled on the first call; each calling thread keeps its own state. `model.runtime`
/// chooses tract (default) or onnxruntime, loaded at run time from `model.onnxruntime_library`
/// or `ORT_DYLIB_PATH` (this library is built with it; one onnxruntime per process). When only
/// the audit fails, `outputs` is still written and the status says why.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_infer(
    auditor: *const mint_auditor,
    sample_ids: *const u64,
    n: usize,
    inputs: *const f32,
    inputs_len: usize,
    outputs: *mut f32,
    outputs_len: usize,
    report: *mut mint_submit_report,
) -> mint_status {
    boundary("mint_auditor_infer", || {
        // SAFETY: forwarded from the caller, per the header.
        unsafe { infer(auditor, Cohort::DEFAULT, sample_ids, n, inputs, inputs_len, outputs, outputs_len, report) }
    })
}

/// `mint_auditor_infer` for samples of `cohort`, as `mint_auditor_submit_cohort` takes it.
/// Since ABI 1.2.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_infer_cohort(
    auditor: *const mint_auditor,
    cohort: u32,
    sample_ids: *const u64,
    n: usize,
    inputs: *const f32,
    inputs_len: usize,
    outputs: *mut f32,
    outputs_len: usize,
    report: *mut mint_submit_report,
) -> mint_status {
    boundary("mint_auditor_infer_cohort", || {
        let cohort = Cohort::from_number(cohort);
        // SAFETY: forwarded from the caller, per the header.
        unsafe { infer(auditor, cohort, sample_ids, n, inputs, inputs_len, outputs, outputs_len, report) }
    })
}

/// # Safety
/// As `mint_auditor_infer` documents its arguments.
#[allow(clippy::too_many_arguments)]
unsafe fn infer(
    auditor: *const mint_auditor,
    cohort: Cohort,
    sample_ids: *const u64,
    n: usize,
    inputs: *const f32,
    inputs_len: usize,
    outputs: *mut f32,
    outputs_len: usize,
    report: *mut mint_submit_report,
) -> Result<(), Failure> {
    // SAFETY: NULL (refused) or valid for the call, per the header.
    unsafe { write_report(report, n, 0, 0) };
    // SAFETY: NULL (refused) or valid for the call, per the header.
    let a = unsafe { auditor_ref(auditor) }?;
    // SAFETY: NULL (refused) or valid for the call, per the header.
    let ids = unsafe { try_slice(sample_ids, n, "sample_ids") }?;
    // SAFETY: NULL (refused) or valid for the call, per the header.
    let inputs = unsafe { try_slice(inputs, inputs_len, "inputs") }?;
    // SAFETY: NULL (refused) or valid for the call, per the header.
    let outputs = unsafe { try_slice_mut(outputs, outputs_len, "outputs") }?;
    let r = a.infer_in(cohort, ids, inputs, outputs)?;
    // SAFETY: NULL (refused) or valid for the call, per the header.
    unsafe { write_report(report, r.seen, r.chosen, r.accepted) };
    Ok(())
}

/// Writes `text` and a NUL into `buf` (`capacity` bytes). `*out_len` receives the bytes
/// needed including the NUL, on success and on `MINT_ERR_BUFFER_TOO_SMALL` alike, so a call
/// with `capacity` 0 (and `buf` NULL) asks for the size.
///
/// # Safety
/// `out_len` is NULL or writable; `buf` is NULL or holds `capacity` writable bytes.
unsafe fn write_text(text: &str, buf: *mut c_char, capacity: usize, out_len: *mut usize) -> Result<(), Failure> {
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

/// Renders the auditor's metrics in the Prometheus text format (0.0.4) into `buf`, NUL
/// terminated. `*out_len` receives the size needed (with the NUL); when `capacity` is too
/// small the call returns `MINT_ERR_BUFFER_TOO_SMALL` and writes nothing else.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_render_metrics(
    auditor: *const mint_auditor,
    buf: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
) -> mint_status {
    boundary("mint_auditor_render_metrics", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let a = unsafe { auditor_ref(auditor) }?;
        // SAFETY: NULL (refused) or valid for the call, per the header.
        unsafe { write_text(&a.render_metrics(), buf, capacity, out_len) }
    })
}

/// Writes the built-in metrics endpoint's address ("127.0.0.1:9464") into `buf`, as
/// `mint_auditor_render_metrics` writes text; an empty string when the endpoint is off.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_metrics_address(
    auditor: *const mint_auditor,
    buf: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
) -> mint_status {
    boundary("mint_auditor_metrics_address", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let a = unsafe { auditor_ref(auditor) }?;
        let addr = a.metrics_addr().map(|a| a.to_string()).unwrap_or_default();
        // SAFETY: NULL (refused) or valid for the call, per the header.
        unsafe { write_text(&addr, buf, capacity, out_len) }
    })
}

/// Writes the lower-case hex sha256 of the head in use (64 characters and a NUL).
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_head_sha256(
    auditor: *const mint_auditor,
    buf: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
) -> mint_status {
    boundary("mint_auditor_head_sha256", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let a = unsafe { auditor_ref(auditor) }?;
        // SAFETY: NULL (refused) or valid for the call, per the header.
        unsafe { write_text(a.head_sha256(), buf, capacity, out_len) }
    })
}

/// Reads the counters.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_stats(auditor: *const mint_auditor, out: *mut mint_stats) -> mint_status {
    boundary("mint_auditor_stats", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let a = unsafe { auditor_ref(auditor) }?;
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let out = unsafe { try_mut(out, "out") }?;
        *out = a.stats().into();
        Ok(())
    })
}

/// Finds the cohort named `name` (`"default"`, or one of the configuration's `cohorts`) and
/// writes its number to `*out`, for `mint_auditor_submit_cohort`. Numbers are positions in
/// the configuration (`default` is 0) and stay fixed for the auditor's life. An unknown
/// name is `MINT_ERR_INVALID_ARGUMENT`, and the message lists the declared ones. Since ABI 1.2.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_cohort(
    auditor: *const mint_auditor,
    name: *const c_char,
    out: *mut u32,
) -> mint_status {
    boundary("mint_auditor_cohort", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let (a, name, out) = unsafe { (auditor_ref(auditor)?, try_str(name, "name")?, try_mut(out, "out")?) };
        let cohort = a.cohort(name).map_err(|e| Failure::new(MINT_ERR_INVALID_ARGUMENT, e.to_string()))?;
        *out = cohort.index() as u32;
        Ok(())
    })
}

/// Reads the counters of one cohort (`queue_depth` is the whole queue's). A cohort the
/// configuration does not declare is `MINT_ERR_INVALID_ARGUMENT`. Since ABI 1.2.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_cohort_stats(
    auditor: *const mint_auditor,
    cohort: u32,
    out: *mut mint_stats,
) -> mint_status {
    boundary("mint_auditor_cohort_stats", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let (a, out) = unsafe { (auditor_ref(auditor)?, try_mut(out, "out")?) };
        let stats = a.cohort_stats(Cohort::from_number(cohort)).map_err(undeclared)?;
        *out = stats.into();
        Ok(())
    })
}

/// The membership evidence on one cohort (docs/evidence.md says how to read it). A value
/// that does not exist yet (no completed window, no calibration, too few reference samples)
/// is NaN. Since ABI 1.2.
#[repr(C)]
#[derive(Default)]
#[allow(non_camel_case_types)]
pub struct mint_cohort_evidence {
    /// Samples of the cohort scored since start.
    pub audited: u64,
    /// Of those, scored at or above the calibrated threshold.
    pub flagged: u64,
    /// Estimated share of members since start, and its 95% interval (NaN uncalibrated).
    pub member_fraction: f64,
    pub member_fraction_low: f64,
    pub member_fraction_high: f64,
    /// Completed evidence windows, and the samples of the current one.
    pub windows: u64,
    pub window_progress: u64,
    /// One-sided p-values of the last completed window: flags against the calibrated FPR
    /// (binomial), scores against the `reference` cohort (rank).
    pub window_binomial_p: f64,
    pub window_rank_p: f64,
    /// Completed windows with p below the configured alpha, per test.
    pub binomial_alarms: u64,
    pub rank_alarms: u64,
    /// Rank test of every score so far against every reference score so far: the z
    /// statistic, its one-sided p-value, and the AUC (0.5: no difference). Valid when looked
    /// at once, at a size planned in advance.
    pub overall_rank_z: f64,
    pub overall_rank_p: f64,
    pub overall_auc: f64,
}

impl From<CohortEvidence> for mint_cohort_evidence {
    fn from(e: CohortEvidence) -> Self {
        let p = |t: Option<mint_audit::evidence::stats::Test>| t.map_or(f64::NAN, |t| t.p_value);
        let (rank_z, rank_p, auc) =
            e.overall_rank.map_or((f64::NAN, f64::NAN, f64::NAN), |(t, auc)| (t.statistic, t.p_value, auc));
        mint_cohort_evidence {
            audited: e.audited,
            flagged: e.flagged,
            member_fraction: e.member_fraction.estimate,
            member_fraction_low: e.member_fraction.low,
            member_fraction_high: e.member_fraction.high,
            windows: e.windows,
            window_progress: e.window_progress,
            window_binomial_p: p(e.last_window[0]),
            window_rank_p: p(e.last_window[1]),
            binomial_alarms: e.alarms[0],
            rank_alarms: e.alarms[1],
            overall_rank_z: rank_z,
            overall_rank_p: rank_p,
            overall_auc: auc,
        }
    }
}

/// Reads the evidence on one cohort. A cohort the configuration does not declare is
/// `MINT_ERR_INVALID_ARGUMENT`. Since ABI 1.2.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_cohort_evidence(
    auditor: *const mint_auditor,
    cohort: u32,
    out: *mut mint_cohort_evidence,
) -> mint_status {
    boundary("mint_auditor_cohort_evidence", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let (a, out) = unsafe { (auditor_ref(auditor)?, try_mut(out, "out")?) };
        let evidence = a.evidence(Cohort::from_number(cohort)).map_err(undeclared)?;
        *out = evidence.into();
        Ok(())
    })
}

/// Reading a cohort that is not declared is a bad argument (nothing was lost).
fn undeclared(e: mint_audit::Error) -> Failure {
    Failure::new(MINT_ERR_INVALID_ARGUMENT, e.to_string())
}

/// Stops accepting samples (later submits return `MINT_ERR_CLOSED`), scores what is queued
/// for up to `timeout_ms`, drops as shutdown (and delivers as such) whatever is left, and
/// stops the workers. The metrics stay readable until `mint_auditor_free`. A second call
/// returns the first call's report. `out` may be NULL. From the auditor's own result
/// callback it returns `MINT_ERR_REENTRANT` and closes nothing.
///
/// Returns within `timeout_ms` plus `MINT_CLOSE_GRACE_MS` whatever the callback or a backend
/// does. A worker still inside the result callback (or a backend ignoring its cancel) then is
/// left to stop on its own once that call returns: the report is written and the status is
/// `MINT_ERR_TIMED_OUT`; the samples queued behind it are counted as shutdown without being
/// delivered.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_close(
    auditor: *const mint_auditor,
    timeout_ms: u32,
    out: *mut mint_close_report,
) -> mint_status {
    boundary("mint_auditor_close", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let a = unsafe { auditor_ref(auditor) }?;
        let report = a.try_close(Duration::from_millis(timeout_ms as u64))?;
        // SAFETY: NULL (refused) or valid for the call, per the header.
        unsafe { write_opt(out, report.into()) };
        match report.workers_busy {
            0 => Ok(()),
            busy => Err(Failure::new(
                MINT_ERR_TIMED_OUT,
                format!(
                    "closed at the deadline with {busy} worker(s) still inside the result callback or the backend \
                     ({} samples not yet counted); they stop on their own when it returns",
                    report.in_flight
                ),
            )),
        }
    })
}
