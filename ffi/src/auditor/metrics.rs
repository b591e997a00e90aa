//! What the auditor shows: its metrics as Prometheus text, the endpoint's address, the head's
//! digest.

use super::*;

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
