//! The library runs the audited model itself (`model.onnx` in the configuration) and audits
//! what it computed.

use super::*;

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
