//! Every pointer argument of the C API passes through these checks (after rustls-ffi's
//! `try_ref`/`try_slice`): NULL, alignment and UTF-8 are checked here, once, and each failure
//! becomes a status naming the argument.

use std::ffi::{c_char, CStr};

use crate::status::{Failure, MINT_ERR_INVALID_ARGUMENT};

/// A shared reference, or `MINT_ERR_NULL_ARGUMENT` naming `name`.
///
/// # Safety
/// `p` is NULL or points to a live `T`, valid for `'a`.
pub(crate) unsafe fn try_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T, Failure> {
    // SAFETY: forwarded from the caller.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::null(name))
}

/// An exclusive reference, or `MINT_ERR_NULL_ARGUMENT` naming `name`.
///
/// # Safety
/// `p` is NULL or points to a writable `T` that nothing else uses during `'a`.
pub(crate) unsafe fn try_mut<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: forwarded from the caller.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::null(name))
}

/// Writes `value` through `p` when `p` is not NULL (optional out-parameters).
///
/// # Safety
/// `p` is NULL or points to a writable `T`.
pub(crate) unsafe fn write_opt<T>(p: *mut T, value: T) {
    // SAFETY: forwarded from the caller.
    if let Some(out) = unsafe { p.as_mut() } {
        *out = value;
    }
}

fn check_aligned<T>(p: *const T, name: &str) -> Result<(), Failure> {
    if (p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        Ok(())
    } else {
        Err(Failure::new(
            MINT_ERR_INVALID_ARGUMENT,
            format!("`{name}` is not aligned to {} bytes", std::mem::align_of::<T>()),
        ))
    }
}

/// `len` values; NULL is accepted for an empty slice only.
///
/// # Safety
/// When `len > 0`, `p` is NULL or points to `len` readable values valid for `'a`.
pub(crate) unsafe fn try_slice<'a, T>(p: *const T, len: usize, name: &str) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::null(name));
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
pub(crate) unsafe fn try_slice_mut<'a, T>(p: *mut T, len: usize, name: &str) -> Result<&'a mut [T], Failure> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Failure::null(name));
    }
    check_aligned(p, name)?;
    // SAFETY: non-NULL and aligned (checked); `len` writable values (the caller's promise).
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn try_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL (checked), NUL-terminated (the caller's promise).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Failure::new(MINT_ERR_INVALID_ARGUMENT, format!("`{name}` is not UTF-8")))
}
