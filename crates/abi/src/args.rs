//! Every pointer argument that crosses a C boundary of mint-audit's libraries (the C API in
//! `ffi/` and the plugin table of [`export_backend!`](crate::export_backend)) passes through
//! these checks, after rustls-ffi's `try_ref`/`try_slice`: NULL, alignment and UTF-8 are
//! checked here, once, and each failure names the argument. The C API turns an [`ArgError`]
//! into its status (`MINT_ERR_NULL_ARGUMENT`, `MINT_ERR_INVALID_ARGUMENT`), a plugin into its
//! error message.

use std::ffi::{c_char, CStr};
use std::fmt;

/// A pointer argument that could not be used, with the argument's name in its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// NULL where a value was needed.
    Null(String),
    /// Misaligned, or not UTF-8.
    Invalid(String),
}

impl ArgError {
    fn null(name: &str) -> ArgError {
        ArgError::Null(format!("`{name}` must not be NULL"))
    }

    /// The message, naming the argument.
    pub fn message(&self) -> &str {
        match self {
            ArgError::Null(m) | ArgError::Invalid(m) => m,
        }
    }
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ArgError {}

impl From<ArgError> for String {
    fn from(e: ArgError) -> String {
        e.to_string()
    }
}

/// A shared reference, or [`ArgError::Null`] naming `name`.
///
/// # Safety
/// `p` is NULL or points to a live `T`, valid for `'a`.
pub unsafe fn try_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T, ArgError> {
    // SAFETY: forwarded from the caller.
    unsafe { p.as_ref() }.ok_or_else(|| ArgError::null(name))
}

/// An exclusive reference, or [`ArgError::Null`] naming `name`.
///
/// # Safety
/// `p` is NULL or points to a writable `T` that nothing else uses during `'a`.
pub unsafe fn try_mut<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, ArgError> {
    // SAFETY: forwarded from the caller.
    unsafe { p.as_mut() }.ok_or_else(|| ArgError::null(name))
}

/// Writes `value` through `p` when `p` is not NULL (optional out-parameters).
///
/// # Safety
/// `p` is NULL or points to a writable `T`.
pub unsafe fn write_opt<T>(p: *mut T, value: T) {
    // SAFETY: forwarded from the caller.
    if let Some(out) = unsafe { p.as_mut() } {
        *out = value;
    }
}

fn check_aligned<T>(p: *const T, name: &str) -> Result<(), ArgError> {
    if (p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        Ok(())
    } else {
        Err(ArgError::Invalid(format!("`{name}` is not aligned to {} bytes", std::mem::align_of::<T>())))
    }
}

/// `len` values; NULL is accepted for an empty slice only.
///
/// # Safety
/// When `len > 0`, `p` is NULL or points to `len` readable values valid for `'a`.
pub unsafe fn try_slice<'a, T>(p: *const T, len: usize, name: &str) -> Result<&'a [T], ArgError> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(ArgError::Null(format!("`{name}` must not be NULL for {len} values")));
    }
    check_aligned(p, name)?;
    // SAFETY: non-NULL and aligned (checked); `len` readable values (the caller's promise).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// `len` writable values; NULL is accepted for an empty slice only.
///
/// # Safety
/// When `len > 0`, `p` is NULL or points to `len` writable values that nothing else uses
/// during `'a`.
pub unsafe fn try_slice_mut<'a, T>(p: *mut T, len: usize, name: &str) -> Result<&'a mut [T], ArgError> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(ArgError::Null(format!("`{name}` must not be NULL for {len} values")));
    }
    check_aligned(p, name)?;
    // SAFETY: non-NULL and aligned (checked); `len` writable values (the caller's promise).
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for `'a`.
pub unsafe fn try_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, ArgError> {
    if p.is_null() {
        return Err(ArgError::null(name));
    }
    // SAFETY: non-NULL (checked), NUL-terminated (the caller's promise).
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| ArgError::Invalid(format!("`{name}` is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_names_its_argument_and_kind() {
        let n: *const u32 = std::ptr::null();
        // SAFETY: NULL or valid pointers, as each function asks.
        unsafe {
            assert_eq!(try_ref(n, "a"), Err(ArgError::Null("`a` must not be NULL".into())));
            assert_eq!(try_slice(n, 0, "s"), Ok(&[][..]));
            assert!(matches!(try_slice(n, 3, "s"), Err(ArgError::Null(m)) if m.contains("3 values")));
            let words = [0u32; 4];
            let odd = (words.as_ptr() as *const u8).add(1) as *const u32;
            assert!(matches!(try_slice(odd, 1, "w"), Err(ArgError::Invalid(m)) if m.contains("aligned to 4")));
            let bad = [0xffu8, 0];
            assert!(matches!(try_str(bad.as_ptr() as *const c_char, "t"), Err(ArgError::Invalid(_))));
            assert_eq!(try_str(c"ok".as_ptr(), "t"), Ok("ok"));
            let mut out = 0u32;
            write_opt(&mut out, 7);
            write_opt(std::ptr::null_mut(), 7u32);
            assert_eq!(out, 7);
        }
    }
}
