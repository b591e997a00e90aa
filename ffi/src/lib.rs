//! The C ABI of mint-audit (`libmint_audit`), a thin layer over the safe Rust library.
//!
//! Conventions (see `include/mint_audit.h`): opaque handles with `_new`/`_free` pairs
//! (`_free(NULL)` is a no-op), out-parameters last, stable numeric result codes, a
//! thread-local message for the last error, and a panic boundary on every exported function
//! so that nothing unwinds into the host.

#![allow(clippy::missing_safety_doc)] // each function's safety contract is its header comment

mod auditor;
mod status;
mod tensor;

use std::ffi::c_char;

pub use auditor::*;
pub use status::*;
pub use tensor::*;

/// Major version of the C ABI: changes when a change breaks existing callers.
pub const MINT_ABI_VERSION_MAJOR: u32 = 1;
/// Minor version of the C ABI: changes when functions or constants are added.
/// 1.1 added `MINT_ERR_REENTRANT`; 1.2 added cohorts (`mint_auditor_cohort`,
/// `mint_auditor_submit_cohort`, `mint_auditor_infer_cohort`, `mint_auditor_cohort_stats`)
/// and evidence (`mint_auditor_cohort_evidence`); 1.3 added `MINT_ERR_TIMED_OUT` and
/// `MINT_CLOSE_GRACE_MS` (closing no longer waits for a result callback that does not return);
/// 1.4 added token sequences (`MINT_FORM_SEQUENCE`, `MINT_LAYOUT_NTC`, `MINT_LAYOUT_NCT`,
/// `mint_tokens` with lengths, masks and the token ids of logits, `mint_auditor_submit_tokens`);
/// 1.5 added anytime-valid evidence (`mint_cohort_anytime`, `mint_auditor_cohort_anytime`).
pub const MINT_ABI_VERSION_MINOR: u32 = 5;

/// How long past its deadline `mint_auditor_close` waits for workers still inside the result
/// callback or a backend before it returns `MINT_ERR_TIMED_OUT` without them.
pub const MINT_CLOSE_GRACE_MS: u32 = 200;

/// The ABI version of the loaded library, `(major << 16) | minor`. Compare the major with
/// `MINT_ABI_VERSION_MAJOR` from the header you compiled against.
#[no_mangle]
pub extern "C" fn mint_abi_version() -> u32 {
    (MINT_ABI_VERSION_MAJOR << 16) | MINT_ABI_VERSION_MINOR
}

/// The library's version ("0.1.0"). Static; never free it.
#[no_mangle]
pub extern "C" fn mint_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_close_grace_in_the_header_is_the_library_s() {
        assert_eq!(mint_audit::CLOSE_GRACE.as_millis(), u128::from(super::MINT_CLOSE_GRACE_MS));
    }
}
