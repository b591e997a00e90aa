//! Result codes, the thread-local error message, and the panic boundary every exported
//! function runs inside.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mint_audit::{Error, ErrorKind};

/// Result of every fallible call. Values are stable across releases; new codes are only
/// ever added. `mint_last_error()` holds a message for any code other than `MINT_OK`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum mint_status {
    /// Success.
    MINT_OK = 0,
    /// A required pointer argument was NULL.
    MINT_ERR_NULL_ARGUMENT = 1,
    /// An argument is out of range: an unknown enum value, a misaligned pointer, a string
    /// that is not UTF-8, a length that does not match.
    MINT_ERR_INVALID_ARGUMENT = 2,
    /// The configuration is malformed or a value is out of range; the message names the field.
    MINT_ERR_INVALID_CONFIG = 3,
    /// The head file's sha256 differs from the configured one; the message names the file.
    MINT_ERR_HEAD_DIGEST_MISMATCH = 4,
    /// The head (or audited model) could not be read, parsed, compiled or run.
    MINT_ERR_HEAD_LOAD = 5,
    /// A tensor's rank, shape or channel count does not match the configured tap; the
    /// batch was dropped (and counted).
    MINT_ERR_INVALID_INPUT = 6,
    /// Some samples carried NaN or infinities and were dropped (and counted); the others
    /// of the batch were accepted.
    MINT_ERR_NON_FINITE = 7,
    /// The queue to the head was full: the batch was dropped (and counted).
    MINT_ERR_QUEUE_FULL = 8,
    /// The CNN path's copy budget was exhausted: the batch was dropped (and counted).
    MINT_ERR_OVER_BUDGET = 9,
    /// The auditor is closed.
    MINT_ERR_CLOSED = 10,
    /// A backend plugin could not be loaded or initialised.
    MINT_ERR_BACKEND = 11,
    /// A file could not be read or written, or a thread could not be started.
    MINT_ERR_IO = 12,
    /// The caller's buffer is too small; the length needed was written to the out-parameter.
    MINT_ERR_BUFFER_TOO_SMALL = 13,
    /// A bug in mint-audit: a panic was caught at the boundary. The handle stays usable.
    MINT_ERR_PANIC = 14,
}

pub use mint_status::*;

impl From<ErrorKind> for mint_status {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidConfig => MINT_ERR_INVALID_CONFIG,
            ErrorKind::HeadDigestMismatch => MINT_ERR_HEAD_DIGEST_MISMATCH,
            ErrorKind::HeadLoad => MINT_ERR_HEAD_LOAD,
            ErrorKind::InvalidInput => MINT_ERR_INVALID_INPUT,
            ErrorKind::NonFinite => MINT_ERR_NON_FINITE,
            ErrorKind::QueueFull => MINT_ERR_QUEUE_FULL,
            ErrorKind::OverBudget => MINT_ERR_OVER_BUDGET,
            ErrorKind::Closed => MINT_ERR_CLOSED,
            ErrorKind::Backend => MINT_ERR_BACKEND,
            ErrorKind::Io => MINT_ERR_IO,
            ErrorKind::BufferTooSmall => MINT_ERR_BUFFER_TOO_SMALL,
        }
    }
}

/// A failure at the boundary: a code and its message.
pub(crate) struct Failure {
    pub status: mint_status,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(status: mint_status, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into() }
    }

    pub(crate) fn null(argument: &str) -> Failure {
        Failure::new(MINT_ERR_NULL_ARGUMENT, format!("`{argument}` must not be NULL"))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure { status: e.kind().into(), message: e.to_string() }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // Interior NULs cannot cross into C; they never occur in our messages, but be safe.
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Test hook: when the environment variable `MINT_FAULT_INJECT_PANIC` names an exported
/// function at the process's first mint call, that function panics inside its boundary, so
/// that tests can watch a panic become `MINT_ERR_PANIC`. Read once; costs one atomic load.
fn injected_panic(name: &str) -> bool {
    static TARGET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    TARGET.get_or_init(|| std::env::var("MINT_FAULT_INJECT_PANIC").ok()).as_deref() == Some(name)
}

/// Runs `f` behind the panic boundary: its error (or a caught panic) becomes a status code and
/// this thread's last error message. On success the last error is cleared.
pub(crate) fn boundary(name: &str, f: impl FnOnce() -> Result<(), Failure>) -> mint_status {
    let guarded = || {
        if injected_panic(name) {
            panic!("fault injected by MINT_FAULT_INJECT_PANIC");
        }
        f()
    };
    match catch_unwind(AssertUnwindSafe(guarded)) {
        Ok(Ok(())) => {
            set_last_error("");
            MINT_OK
        }
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error in {name} (please report): {what}"));
            MINT_ERR_PANIC
        }
    }
}

/// Like [`boundary`] for functions that cannot fail but must not unwind either.
pub(crate) fn boundary_infallible<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// The message of the last failed call on this thread, or "" after a successful call.
/// The pointer stays valid until the next mint_* call on this thread; never free it.
#[no_mangle]
pub extern "C" fn mint_last_error() -> *const c_char {
    boundary_infallible(c"".as_ptr(), || LAST_ERROR.with(|e| e.borrow().as_ptr()))
}

/// The name of a status code ("MINT_OK", "MINT_ERR_QUEUE_FULL", ...), or "MINT_UNKNOWN" for
/// values this version does not know. The string is static; never free it.
#[no_mangle]
pub extern "C" fn mint_status_name(status: i32) -> *const c_char {
    let name: &'static std::ffi::CStr = match status {
        0 => c"MINT_OK",
        1 => c"MINT_ERR_NULL_ARGUMENT",
        2 => c"MINT_ERR_INVALID_ARGUMENT",
        3 => c"MINT_ERR_INVALID_CONFIG",
        4 => c"MINT_ERR_HEAD_DIGEST_MISMATCH",
        5 => c"MINT_ERR_HEAD_LOAD",
        6 => c"MINT_ERR_INVALID_INPUT",
        7 => c"MINT_ERR_NON_FINITE",
        8 => c"MINT_ERR_QUEUE_FULL",
        9 => c"MINT_ERR_OVER_BUDGET",
        10 => c"MINT_ERR_CLOSED",
        11 => c"MINT_ERR_BACKEND",
        12 => c"MINT_ERR_IO",
        13 => c"MINT_ERR_BUFFER_TOO_SMALL",
        14 => c"MINT_ERR_PANIC",
        _ => c"MINT_UNKNOWN",
    };
    name.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn panics_become_codes_and_messages() {
        let s = boundary("test_fn", || panic!("boom"));
        assert_eq!(s, MINT_ERR_PANIC);
        let msg = unsafe { CStr::from_ptr(mint_last_error()) }.to_str().unwrap().to_string();
        assert!(msg.contains("test_fn") && msg.contains("boom"), "{msg}");
        assert_eq!(boundary("ok", || Ok(())), MINT_OK);
        assert_eq!(unsafe { CStr::from_ptr(mint_last_error()) }.to_bytes(), b"");
    }

    #[test]
    fn every_code_has_its_name() {
        for code in 0..=14 {
            let name = unsafe { CStr::from_ptr(mint_status_name(code)) }.to_str().unwrap();
            assert!(name.starts_with("MINT_") && name != "MINT_UNKNOWN");
        }
        assert_eq!(unsafe { CStr::from_ptr(mint_status_name(99)) }.to_str().unwrap(), "MINT_UNKNOWN");
    }
}
