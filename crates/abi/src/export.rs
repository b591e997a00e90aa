//! The C side of a plugin written against [`Backend`](crate::Backend): the function table
//! that [`export_backend!`](crate::export_backend) puts behind `mint_backend_entry`. Every
//! pointer the host passes is checked by [`crate::args`] (shared with the C API), and every
//! call runs inside the panic boundary.

use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::time::Duration;

use crate::args::{try_ref, try_slice, try_str};
use crate::backend::{Backend, Batch, Host, Options};
use crate::boundary;
use crate::{
    mint_backend, mint_backend_api, mint_backend_batch, mint_backend_host, mint_backend_options,
    MINT_BACKEND_ABI_MAJOR, MINT_BACKEND_ABI_MINOR, MINT_BACKEND_ERROR, MINT_BACKEND_OK,
};

/// What `create` hands the host: the plugin's value and the one number every batch needs.
struct Instance<B> {
    backend: B,
    sample_len: usize,
}

/// Runs `f` inside the boundary: an error or a panic becomes `MINT_BACKEND_ERROR` and this
/// thread's last error.
fn guarded(f: impl FnOnce() -> Result<(), String>) -> i32 {
    match boundary::catch(f) {
        Ok(Ok(())) => MINT_BACKEND_OK,
        Ok(Err(message)) => {
            boundary::set_last_error(&message);
            MINT_BACKEND_ERROR
        }
        Err(panic) => {
            boundary::set_last_error(&format!("internal error (panic) in the backend: {panic}"));
            MINT_BACKEND_ERROR
        }
    }
}

/// # Safety
/// `backend` is NULL or an instance made by `create::<B>` and not yet destroyed.
unsafe fn instance<'a, B>(backend: *const mint_backend) -> Result<&'a Instance<B>, String> {
    // SAFETY: forwarded from the caller; `create::<B>` made it from a `Box<Instance<B>>`.
    Ok(unsafe { try_ref(backend as *const Instance<B>, "backend") }?)
}

/// `mint_backend_api.create` for `B`.
///
/// # Safety
/// The ABI's contract for `create` (include/mint_backend.h).
pub unsafe extern "C" fn create<B: Backend>(
    config_json: *const c_char,
    options: *const mint_backend_options,
    host: *const mint_backend_host,
    out: *mut *mut mint_backend,
) -> i32 {
    guarded(|| {
        // SAFETY: each pointer is NULL or valid for the call, per the ABI.
        let (options, host, config) =
            unsafe { (try_ref(options, "options")?, try_ref(host, "host")?, try_str(config_json, "config_json")?) };
        if out.is_null() {
            return Err("`out` is NULL".into());
        }
        // SAFETY: NULL or a NUL-terminated string valid for the call, per the ABI.
        let base_dir = unsafe { try_str(options.base_dir, "options.base_dir") }?;
        let sample_len = options
            .channels
            .checked_mul(options.height)
            .and_then(|x| x.checked_mul(options.width))
            .filter(|&n| n > 0)
            .ok_or("options: the map shape is empty or overflows")?;
        let options = Options {
            channels: options.channels,
            height: options.height,
            width: options.width,
            max_batch: options.max_batch,
            base_dir: PathBuf::from(base_dir),
        };
        let host = Host::new(
            host.host_data,
            host.on_scores.ok_or("the host gave no on_scores callback")?,
            host.on_failure.ok_or("the host gave no on_failure callback")?,
            host.log,
        );
        let backend = B::create(config, &options, host)?;
        let instance = Box::new(Instance { backend, sample_len });
        // SAFETY: `out` is non-NULL (checked) and writable, per the ABI.
        unsafe { *out = Box::into_raw(instance) as *mut mint_backend };
        Ok(())
    })
}

/// `mint_backend_api.submit` for `B`.
///
/// # Safety
/// The ABI's contract for `submit`.
pub unsafe extern "C" fn submit<B: Backend>(backend: *mut mint_backend, batch: *const mint_backend_batch) -> i32 {
    guarded(|| {
        // SAFETY: an instance of `B` and a batch valid for the call, per the ABI.
        let (instance, batch) = unsafe { (instance::<B>(backend)?, try_ref(batch, "batch")?) };
        if batch.count == 0 {
            return Ok(());
        }
        let len = batch.count.checked_mul(instance.sample_len).ok_or("batch.count overflows")?;
        // SAFETY: `count` ids and `count` maps readable for the call, per the ABI.
        let (ids, maps) = unsafe {
            (try_slice(batch.sample_ids, batch.count, "batch.sample_ids")?, try_slice(batch.maps, len, "batch.maps")?)
        };
        let batch = Batch::new(ids, maps, instance.sample_len).ok_or("the batch's lengths disagree")?;
        instance.backend.submit(&batch)
    })
}

/// `mint_backend_api.flush` for `B`.
///
/// # Safety
/// The ABI's contract for `flush`.
pub unsafe extern "C" fn flush<B: Backend>(backend: *mut mint_backend, timeout_ms: u32) -> usize {
    // SAFETY: an instance of `B`, per the ABI.
    let Ok(instance) = (unsafe { instance::<B>(backend) }) else { return 0 };
    boundary::catch(|| instance.backend.flush(Duration::from_millis(timeout_ms.into()))).unwrap_or(0)
}

/// `mint_backend_api.destroy` for `B`.
///
/// # Safety
/// The ABI's contract for `destroy`: an instance from `create`, destroyed once.
pub unsafe extern "C" fn destroy<B: Backend>(backend: *mut mint_backend) {
    if backend.is_null() {
        return;
    }
    // SAFETY: made by `create::<B>` from a `Box<Instance<B>>`, destroyed once, per the ABI.
    let instance = unsafe { Box::from_raw(backend as *mut Instance<B>) };
    let _ = boundary::catch(move || drop(instance));
}

/// `mint_backend_api.last_error`.
///
/// # Safety
/// None beyond the ABI's: the argument is not read.
pub unsafe extern "C" fn last_error(_backend: *const mint_backend) -> *const c_char {
    boundary::last_error()
}

/// `mint_backend_api.cancel` for `B`.
///
/// # Safety
/// The ABI's contract for `cancel`.
pub unsafe extern "C" fn cancel<B: Backend>(backend: *mut mint_backend) {
    // SAFETY: an instance of `B`, per the ABI.
    if let Ok(instance) = unsafe { instance::<B>(backend) } {
        let _ = boundary::catch(|| instance.backend.cancel());
    }
}

/// `mint_backend_api.render_metrics` for `B`.
///
/// # Safety
/// The ABI's contract for `render_metrics`.
pub unsafe extern "C" fn render_metrics<B: Backend>(
    backend: *const mint_backend,
    buf: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
) -> i32 {
    guarded(|| {
        // SAFETY: an instance of `B`, per the ABI.
        let instance = unsafe { instance::<B>(backend) }?;
        let text = instance.backend.render_metrics().unwrap_or_default();
        let needed = text.len() + 1;
        if !out_len.is_null() {
            // SAFETY: non-NULL (checked) and writable, per the ABI.
            unsafe { *out_len = needed };
        }
        if capacity < needed || buf.is_null() {
            return Err(format!("{needed} bytes needed"));
        }
        // SAFETY: `buf` holds `capacity >= needed` writable bytes, per the ABI.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, text.len());
            *buf.add(text.len()) = 0;
        }
        Ok(())
    })
}

/// The table of `B`, for a `static`.
pub const fn table<B: Backend>(name: &'static CStr, version: &'static CStr) -> mint_backend_api {
    mint_backend_api {
        abi_major: MINT_BACKEND_ABI_MAJOR,
        abi_minor: MINT_BACKEND_ABI_MINOR,
        struct_size: std::mem::size_of::<mint_backend_api>(),
        name: name.as_ptr(),
        version: version.as_ptr(),
        create: Some(create::<B>),
        submit: Some(submit::<B>),
        flush: Some(flush::<B>),
        destroy: Some(destroy::<B>),
        last_error: Some(last_error),
        render_metrics: Some(render_metrics::<B>),
        cancel: Some(cancel::<B>),
    }
}

/// A `&'static CStr` from a string literal, at compile time.
pub const fn c_str(bytes_with_nul: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(bytes_with_nul) {
        Ok(s) => s,
        Err(_) => panic!("a plugin's name and version must hold no NUL"),
    }
}

/// Exports a [`Backend`](crate::Backend) type as a mint-audit plugin: generates its static
/// function table ([`backend_entry!`](crate::backend_entry)) and the `mint_backend_entry`
/// symbol ([`export_entry!`](crate::export_entry)). Use once per plugin library, with the
/// plugin's short name; its version is the crate's.
#[macro_export]
macro_rules! export_backend {
    ($backend:ty, $name:literal) => {
        $crate::backend_entry!($backend, $name);
        $crate::export_entry!(entry);
    };
}

/// Generates a [`Backend`](crate::Backend) type's static function table and `pub extern "C"
/// fn entry()`, an ordinary (mangled) Rust function returning it, without exporting any
/// symbol: for a backend crate that hosts also link (`mint_audit::link_backend`), beside other
/// backends, while a thin plugin crate exports it with [`export_entry!`](crate::export_entry).
#[macro_export]
macro_rules! backend_entry {
    ($backend:ty, $name:literal) => {
        static MINT_BACKEND_API: $crate::mint_backend_api = $crate::export::table::<$backend>(
            $crate::export::c_str(concat!($name, "\0").as_bytes()),
            $crate::export::c_str(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()),
        );

        /// The backend's static function table (what a host links, or a plugin exports).
        pub extern "C" fn entry() -> *const $crate::mint_backend_api {
            &MINT_BACKEND_API
        }
    };
}

/// Exports `$entry` (a function generated by [`backend_entry!`](crate::backend_entry)) as the
/// plugin's `mint_backend_entry` symbol. Once per plugin library: two in one object collide.
#[macro_export]
macro_rules! export_entry {
    ($entry:path) => {
        /// The plugin's entry point: its static function table.
        #[no_mangle]
        pub extern "C" fn mint_backend_entry() -> *const $crate::mint_backend_api {
            $entry()
        }
    };
}
