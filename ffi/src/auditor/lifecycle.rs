//! An auditor's life: created from a configuration (text or file), closed, freed.

use super::*;

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
