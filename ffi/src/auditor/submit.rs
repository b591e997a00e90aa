//! Handing over what the vendor's model computed: taps of one batch, with a cohort, with
//! token sequences' valid tokens.

use super::*;

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
    // Nothing taken in until the call can be read: the report agrees with the counters.
    // SAFETY: `report` is NULL or writable, per the header.
    unsafe { write_report(report, 0, 0, 0) };
    // SAFETY: NULL or a live handle, per the header.
    let a = unsafe { auditor_ref(auditor) }?;
    // SAFETY: `n` readable ids, per the header.
    let ids = unsafe { try_slice(sample_ids, n, "sample_ids") }?;
    // From here the core counts the batch, whatever becomes of it.
    // SAFETY: as above.
    unsafe { write_report(report, n, 0, 0) };
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
