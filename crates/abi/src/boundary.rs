//! The boundary between Rust and C, for every exported function of mint-audit's libraries (the
//! C API and the backend plugins): a thread-local message for the last failure, and a panic
//! guard, since nothing may unwind into a C caller.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    /// How many [`catch`]es this thread is inside: their panics are ours to report.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
}

/// Keeps `message` as this thread's last error (interior NULs become spaces).
pub fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// This thread's last error; valid until the next [`set_last_error`] on this thread.
pub fn last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The text of a caught panic.
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Chains a panic hook, once per process, that stays silent for panics [`catch`] will turn
/// into an error (their message goes to the caller, not to the host's stderr) and hands every
/// other panic to the hook that was there before.
fn quiet_caught_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into `Err` with its message; nothing is printed.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    quiet_caught_panics();
    CATCHING.with(|c| c.set(c.get() + 1));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    outcome.map_err(|p| panic_message(&*p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn messages_and_panics() {
        set_last_error("a\0b");
        // SAFETY: `last_error` returns this thread's live NUL-terminated message.
        assert_eq!(unsafe { CStr::from_ptr(last_error()) }.to_str().unwrap(), "a b");
        assert_eq!(catch(|| -> u8 { panic!("boom {}", 1) }).unwrap_err(), "boom 1");
        assert_eq!(catch(|| 7), Ok(7));
    }
}
