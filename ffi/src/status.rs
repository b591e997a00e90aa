//! Result codes, the thread-local error message, and the panic boundary every exported
//! function runs inside.

use std::ffi::{c_char, CStr};

use mint_audit::{Error, ErrorKind};
use mint_backend_abi::args::ArgError;
use mint_backend_abi::boundary::{self, set_last_error};

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
    /// Called from the auditor's own result callback, where it cannot be done (closing or
    /// freeing waits for the worker thread the callback runs on). Since ABI 1.1.
    MINT_ERR_REENTRANT = 15,
    /// A deadline passed with work unfinished: `mint_auditor_close` returned at its deadline
    /// (plus `MINT_CLOSE_GRACE_MS`) while a worker was still inside the result callback or a
    /// backend. The report is written; its counters become final once that worker returns.
    /// Since ABI 1.3.
    MINT_ERR_TIMED_OUT = 16,
}

pub use mint_status::*;

/// Lists every status once: names come from the variants themselves (`stringify!`), and the
/// exhaustive `match` fails to compile when a variant is missing from the list.
macro_rules! statuses {
    ($($code:ident),* $(,)?) => {
        impl mint_status {
            /// Every status, in numeric order.
            pub const ALL: &'static [mint_status] = &[$($code),*];

            /// The status's name, as in the header.
            pub fn name(self) -> &'static CStr {
                match self {
                    $($code => {
                        const NAME: &CStr = match CStr::from_bytes_with_nul(concat!(stringify!($code), "\0").as_bytes()) {
                            Ok(name) => name,
                            Err(_) => panic!("a status name holds no NUL"),
                        };
                        NAME
                    })*
                }
            }
        }
    };
}

statuses!(
    MINT_OK,
    MINT_ERR_NULL_ARGUMENT,
    MINT_ERR_INVALID_ARGUMENT,
    MINT_ERR_INVALID_CONFIG,
    MINT_ERR_HEAD_DIGEST_MISMATCH,
    MINT_ERR_HEAD_LOAD,
    MINT_ERR_INVALID_INPUT,
    MINT_ERR_NON_FINITE,
    MINT_ERR_QUEUE_FULL,
    MINT_ERR_OVER_BUDGET,
    MINT_ERR_CLOSED,
    MINT_ERR_BACKEND,
    MINT_ERR_IO,
    MINT_ERR_BUFFER_TOO_SMALL,
    MINT_ERR_PANIC,
    MINT_ERR_REENTRANT,
    MINT_ERR_TIMED_OUT,
);

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
            ErrorKind::Reentrant => MINT_ERR_REENTRANT,
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
}

impl From<ArgError> for Failure {
    fn from(e: ArgError) -> Self {
        match e {
            ArgError::Null(message) => Failure { status: MINT_ERR_NULL_ARGUMENT, message },
            ArgError::Invalid(message) => Failure { status: MINT_ERR_INVALID_ARGUMENT, message },
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure { status: e.kind().into(), message: e.to_string() }
    }
}

/// Test hook (cargo feature `fault-injection`, never in a release artefact): when the
/// environment variable `MINT_FAULT_INJECT_PANIC` names an exported function at the process's
/// first mint call, that function panics inside its boundary, so that tests can watch a panic
/// become `MINT_ERR_PANIC`. Read once; costs one atomic load.
#[cfg(feature = "fault-injection")]
fn injected_panic(name: &str) -> bool {
    static TARGET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    TARGET.get_or_init(|| std::env::var("MINT_FAULT_INJECT_PANIC").ok()).as_deref() == Some(name)
}

/// Without the `fault-injection` feature the variable is never read.
#[cfg(not(feature = "fault-injection"))]
fn injected_panic(_name: &str) -> bool {
    false
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
    match boundary::catch(guarded) {
        Ok(Ok(())) => {
            set_last_error("");
            MINT_OK
        }
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(what) => {
            set_last_error(&format!("internal error in {name} (please report): {what}"));
            MINT_ERR_PANIC
        }
    }
}

/// Like [`boundary`] for functions that cannot fail but must not unwind either.
pub(crate) fn boundary_infallible<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    boundary::catch(f).unwrap_or(fallback)
}

/// The message of the last failed call on this thread, or "" after a successful call.
/// The pointer stays valid until the next mint_* call on this thread; never free it.
#[no_mangle]
pub extern "C" fn mint_last_error() -> *const c_char {
    boundary_infallible(c"".as_ptr(), boundary::last_error)
}

/// The name of a status code ("MINT_OK", "MINT_ERR_QUEUE_FULL", ...), or "MINT_UNKNOWN" for
/// values this version does not know. The string is static; never free it.
#[no_mangle]
pub extern "C" fn mint_status_name(status: i32) -> *const c_char {
    let known = mint_status::ALL.iter().find(|&&s| s as i32 == status);
    known.map_or(c"MINT_UNKNOWN", |s| s.name()).as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn panics_become_codes_and_messages() {
        let s = boundary("test_fn", || panic!("boom"));
        assert_eq!(s, MINT_ERR_PANIC);
        // SAFETY: `mint_last_error` returns this thread's live NUL-terminated message.
        let msg = unsafe { CStr::from_ptr(mint_last_error()) }.to_str().unwrap().to_string();
        assert!(msg.contains("test_fn") && msg.contains("boom"), "{msg}");
        assert_eq!(boundary("ok", || Ok(())), MINT_OK);
        // SAFETY: as above.
        assert_eq!(unsafe { CStr::from_ptr(mint_last_error()) }.to_bytes(), b"");
    }

    fn name_of(code: i32) -> String {
        // SAFETY: `mint_status_name` returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(mint_status_name(code)) }.to_str().unwrap().to_string()
    }

    #[test]
    fn every_code_has_its_name() {
        for code in 0..=16 {
            let name = name_of(code);
            assert!(name.starts_with("MINT_") && name != "MINT_UNKNOWN");
        }
        assert_eq!(name_of(8), "MINT_ERR_QUEUE_FULL");
        assert_eq!(name_of(14), "MINT_ERR_PANIC");
        assert_eq!(name_of(99), "MINT_UNKNOWN");
        assert_eq!(name_of(15), "MINT_ERR_REENTRANT");
        assert_eq!(name_of(16), "MINT_ERR_TIMED_OUT");
        assert_eq!(mint_status::ALL.len(), 17);
        assert!(mint_status::ALL.iter().enumerate().all(|(i, &s)| s as usize == i));
    }
}
