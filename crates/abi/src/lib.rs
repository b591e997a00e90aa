//! The backend plugin ABI of mint-audit (`include/mint_backend.h`).
//!
//! A backend scores CNN MINT heads on full activation maps, outside the core library: on
//! the CPU with tract, on a GPU, or on a remote NVIDIA Triton server. It is a shared library
//! exporting one symbol, `mint_backend_entry`, which returns a versioned table of C functions.
//! The host (the auditor) loads it at run time, checks the table (ABI major, minor, struct
//! size, every required function), and calls it from its worker threads:
//!
//! 1. `create` once, with the backend's JSON configuration, the shape of one map and the
//!    host's callbacks;
//! 2. `submit` for each batch of maps (from several worker threads at once when the auditor
//!    has several workers: a backend must be thread-safe); the maps are valid during the call
//!    only, so a backend that answers later copies them first;
//! 3. every submitted sample is answered exactly once, through `on_scores` or `on_failure`,
//!    from any thread, during `submit` or later;
//! 4. `flush` waits for the outstanding answers, up to a deadline;
//! 5. `destroy` once; after it returns the backend never calls the host again.
//!
//! Versioning follows Triton's backend API: the host accepts a table whose major equals its
//! own and whose `struct_size` covers the functions it uses; minors only add fields at the end.
//!
//! A plugin written in Rust needs none of the C types: it implements the safe [`Backend`]
//! trait and names its type in [`export_backend!`], which generates the table, the entry
//! point, the argument checks and the panic boundary. Both shipped plugins are written so,
//! with `#![forbid(unsafe_code)]`:
//!
//! ```
//! struct Echo { host: mint_backend_abi::Host }
//! impl mint_backend_abi::Backend for Echo {
//!     fn create(_config: &str, _options: &mint_backend_abi::Options, host: mint_backend_abi::Host) -> Result<Self, String> {
//!         Ok(Echo { host })
//!     }
//!     fn submit(&self, batch: &mint_backend_abi::Batch<'_>) -> Result<(), String> {
//!         self.host.scores(batch.ids(), &vec![0.5; batch.len()]);
//!         Ok(())
//!     }
//! }
//! mint_backend_abi::export_backend!(Echo, "echo");
//! ```

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};

/// Major version of the backend ABI: a plugin built for another major is refused.
pub const MINT_BACKEND_ABI_MAJOR: u32 = 1;
/// Minor version of the backend ABI: fields are only ever added at the end of the table.
/// 1.1 added `cancel`.
pub const MINT_BACKEND_ABI_MINOR: u32 = 1;

/// Success.
pub const MINT_BACKEND_OK: i32 = 0;
/// Failure; `last_error` says why.
pub const MINT_BACKEND_ERROR: i32 = 1;

/// Log levels of `mint_backend_host::log`.
pub const MINT_BACKEND_LOG_ERROR: u32 = 1;
pub const MINT_BACKEND_LOG_WARN: u32 = 2;
pub const MINT_BACKEND_LOG_INFO: u32 = 3;

/// A backend instance, defined by the plugin; opaque to the host.
pub struct mint_backend {
    _private: [u8; 0],
}

/// Scores for samples of earlier submits (`count` ids and as many scores in [0, 1]). May be
/// called from any thread, during `submit` or later; `sample_ids` and `scores` are read during
/// the call only.
pub type mint_backend_scores_fn =
    Option<unsafe extern "C" fn(host_data: *mut c_void, sample_ids: *const u64, scores: *const f32, count: usize)>;

/// Samples the backend could not score (a timeout, a server error), with a message.
pub type mint_backend_failure_fn =
    Option<unsafe extern "C" fn(host_data: *mut c_void, sample_ids: *const u64, count: usize, message: *const c_char)>;

/// A log line from the backend (`MINT_BACKEND_LOG_*`).
pub type mint_backend_log_fn = Option<unsafe extern "C" fn(host_data: *mut c_void, level: u32, message: *const c_char)>;

/// What the host offers the backend; valid until `destroy` returns.
#[repr(C)]
pub struct mint_backend_host {
    /// `sizeof(mint_backend_host)` as the host was built.
    pub struct_size: usize,
    /// Passed back to every callback.
    pub host_data: *mut c_void,
    pub on_scores: mint_backend_scores_fn,
    pub on_failure: mint_backend_failure_fn,
    pub log: mint_backend_log_fn,
}

/// What the backend will be given.
#[repr(C)]
pub struct mint_backend_options {
    /// `sizeof(mint_backend_options)` as the host was built.
    pub struct_size: usize,
    /// One sample's map is `[channels, height, width]`, f32, row-major (NCHW without N).
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// No batch holds more samples than this.
    pub max_batch: usize,
    /// Folder of the auditor's configuration, for relative paths in the backend's own; UTF-8.
    pub base_dir: *const c_char,
}

/// One batch of maps.
#[repr(C)]
pub struct mint_backend_batch {
    pub sample_ids: *const u64,
    pub count: usize,
    /// `count × channels × height × width` f32; valid during `submit` only.
    pub maps: *const f32,
}

/// Creates an instance from the backend's JSON configuration (the `backend.config` object of
/// the auditor's configuration, as text). On success writes the instance to `*out`.
pub type mint_backend_create_fn = Option<
    unsafe extern "C" fn(
        config_json: *const c_char,
        options: *const mint_backend_options,
        host: *const mint_backend_host,
        out: *mut *mut mint_backend,
    ) -> i32,
>;
/// Takes a batch; may block for back-pressure (a bound on requests in flight). On an error
/// return, none of the batch's samples may be answered later: the host counts them all.
pub type mint_backend_submit_fn =
    Option<unsafe extern "C" fn(backend: *mut mint_backend, batch: *const mint_backend_batch) -> i32>;
/// Waits until every submitted sample was answered or `timeout_ms` passed; returns how many
/// are still outstanding.
pub type mint_backend_flush_fn = Option<unsafe extern "C" fn(backend: *mut mint_backend, timeout_ms: u32) -> usize>;
/// Destroys the instance; afterwards no callback may run. Outstanding samples are abandoned.
pub type mint_backend_destroy_fn = Option<unsafe extern "C" fn(backend: *mut mint_backend)>;
/// The message of this thread's last failed call (`backend` NULL after a failed `create`);
/// valid until the next call on this thread.
pub type mint_backend_last_error_fn = Option<unsafe extern "C" fn(backend: *const mint_backend) -> *const c_char>;
/// Optional: the backend's own metrics in the Prometheus text format, appended to the
/// auditor's (names must start with `mint_backend_`). Writes up to `capacity` bytes and the
/// size needed (with a NUL) to `*out_len`; returns `MINT_BACKEND_ERROR` when it did not fit.
pub type mint_backend_render_metrics_fn = Option<
    unsafe extern "C" fn(backend: *const mint_backend, buf: *mut c_char, capacity: usize, out_len: *mut usize) -> i32,
>;

/// Optional (ABI 1.1): the host is closing and its deadline has passed. Calls blocked in
/// `submit` return soon (an error), retries stop, and work not yet sent is dropped unanswered
/// (the host counts it). May be called from any thread, while other calls run.
pub type mint_backend_cancel_fn = Option<unsafe extern "C" fn(backend: *mut mint_backend)>;

/// The table a plugin's `mint_backend_entry` returns; static, owned by the plugin.
#[repr(C)]
pub struct mint_backend_api {
    /// `MINT_BACKEND_ABI_MAJOR` the plugin was built against.
    pub abi_major: u32,
    /// `MINT_BACKEND_ABI_MINOR` the plugin was built against.
    pub abi_minor: u32,
    /// `sizeof(mint_backend_api)` as the plugin was built.
    pub struct_size: usize,
    /// Short name ("cpu", "triton"), static UTF-8.
    pub name: *const c_char,
    /// The plugin's version, static UTF-8.
    pub version: *const c_char,
    pub create: mint_backend_create_fn,
    pub submit: mint_backend_submit_fn,
    pub flush: mint_backend_flush_fn,
    pub destroy: mint_backend_destroy_fn,
    pub last_error: mint_backend_last_error_fn,
    /// May be NULL.
    pub render_metrics: mint_backend_render_metrics_fn,
    /// ABI 1.1; may be NULL. The host reads it only from tables whose `struct_size` covers it.
    pub cancel: mint_backend_cancel_fn,
}

// SAFETY: the table is immutable static data of the plugin; its pointers are to static
// strings and functions.
unsafe impl Sync for mint_backend_api {}

/// The one symbol a plugin exports.
pub type mint_backend_entry_fn = unsafe extern "C" fn() -> *const mint_backend_api;

/// Name of the entry symbol.
pub const ENTRY_SYMBOL: &str = "mint_backend_entry";

/// `sizeof(mint_backend_api)` of ABI 1.0: the host needs at least this much of the table.
pub const API_SIZE_1_0: usize = std::mem::offset_of!(mint_backend_api, cancel);

/// The table's size from ABI 1.1 on, which holds `cancel`.
pub const API_SIZE_1_1: usize = std::mem::size_of::<mint_backend_api>();

pub mod args;
pub mod boundary;
pub mod score;

mod backend;
#[doc(hidden)]
pub mod export;

pub use backend::{Backend, Batch, Host, LogLevel, Options};
