//! The reference CPU backend of mint-audit (`libmint_backend_cpu.so`): runs a CNN MINT head,
//! an ONNX model taking `[N, C, H, W]` maps to `[N]` or `[N, 1]` scores, with tract, on the
//! host's worker thread that submits the batch. With it every path of the product works on a
//! machine without a GPU, and it is the reference the Triton backend is checked against.
//!
//! Configuration (`backend.config` of the auditor's):
//! `{"head": "cnn_head.onnx", "sha256": "<hex>", "output": "probability" | "logit"}`;
//! a relative `head` is resolved against the auditor configuration's folder, and a head whose
//! sha256 differs is refused, naming the file.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use mint_audit::config::ScoreOutput;
use mint_audit::head::{HeadModel, HeadRunner};
use mint_backend_abi::support;
use mint_backend_abi::*;
use serde::Deserialize;
use thread_local::ThreadLocal;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CpuConfig {
    head: PathBuf,
    sha256: String,
    #[serde(default)]
    output: ScoreOutput,
}

struct Instance {
    head: HeadModel,
    runners: ThreadLocal<RefCell<HeadRunner>>,
    on_scores: unsafe extern "C" fn(*mut c_void, *const u64, *const f32, usize),
    host_data: *mut c_void,
    sample_len: usize,
}

// SAFETY: `host_data` is the host's, usable from any thread by the ABI's contract; the rest is
// thread-safe (a shared compiled plan, one runner per thread).
unsafe impl Send for Instance {}
unsafe impl Sync for Instance {}

fn guarded(f: impl FnOnce() -> Result<(), String>) -> i32 {
    support::guarded("CPU", f)
}

unsafe extern "C" fn create(
    config_json: *const c_char,
    options: *const mint_backend_options,
    host: *const mint_backend_host,
    out: *mut *mut mint_backend,
) -> i32 {
    guarded(|| {
        // SAFETY: valid pointers for the call, per the ABI.
        let (options, host) = unsafe { (options.as_ref(), host.as_ref()) };
        let (Some(options), Some(host)) = (options, host) else { return Err("NULL options or host".into()) };
        if config_json.is_null() || out.is_null() {
            return Err("NULL config or out".into());
        }
        let json = unsafe { CStr::from_ptr(config_json) }.to_str().map_err(|e| e.to_string())?;
        let config: CpuConfig = serde_json::from_str(json).map_err(|e| format!("configuration: {e}"))?;
        let base = unsafe { CStr::from_ptr(options.base_dir) }.to_string_lossy().into_owned();
        let path = if config.head.is_relative() { PathBuf::from(base).join(&config.head) } else { config.head };
        let shape = [options.channels, options.height, options.width];
        let head = HeadModel::load(&path, Some(&config.sha256), &shape, config.output)
            .and_then(|h| h.with_batch_plans(&[1, options.max_batch]))
            .map_err(|e| e.to_string())?;
        let on_scores = host.on_scores.ok_or("the host gave no on_scores callback")?;
        let instance = Box::new(Instance {
            head,
            runners: ThreadLocal::new(),
            on_scores,
            host_data: host.host_data,
            sample_len: shape.iter().product(),
        });
        unsafe { *out = Box::into_raw(instance) as *mut mint_backend };
        Ok(())
    })
}

unsafe extern "C" fn submit(backend: *mut mint_backend, batch: *const mint_backend_batch) -> i32 {
    guarded(|| {
        // SAFETY: an instance from `create`; the batch is valid for the call.
        let instance = unsafe { (backend as *const Instance).as_ref() }.ok_or("NULL backend")?;
        let batch = unsafe { batch.as_ref() }.ok_or("NULL batch")?;
        if batch.count == 0 {
            return Ok(());
        }
        let ids = unsafe { std::slice::from_raw_parts(batch.sample_ids, batch.count) };
        let maps = unsafe { std::slice::from_raw_parts(batch.maps, batch.count * instance.sample_len) };
        let cell = match instance.runners.get_or_try(|| instance.head.runner().map(RefCell::new)) {
            Ok(cell) => cell,
            Err(e) => return Err(e.to_string()),
        };
        let mut scores = Vec::with_capacity(batch.count);
        cell.borrow_mut().score(maps, batch.count, &mut scores).map_err(|e| e.to_string())?;
        // Answered before returning: this backend has nothing outstanding, ever.
        unsafe { (instance.on_scores)(instance.host_data, ids.as_ptr(), scores.as_ptr(), scores.len()) };
        Ok(())
    })
}

unsafe extern "C" fn flush(_backend: *mut mint_backend, _timeout_ms: u32) -> usize {
    0
}

unsafe extern "C" fn destroy(backend: *mut mint_backend) {
    if !backend.is_null() {
        // SAFETY: an instance from `create`, destroyed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(backend as *mut Instance) })));
    }
}

unsafe extern "C" fn last_error(_backend: *const mint_backend) -> *const c_char {
    support::last_error()
}

static API: mint_backend_api = mint_backend_api {
    abi_major: MINT_BACKEND_ABI_MAJOR,
    abi_minor: MINT_BACKEND_ABI_MINOR,
    struct_size: std::mem::size_of::<mint_backend_api>(),
    name: c"cpu".as_ptr(),
    version: concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char,
    create: Some(create),
    submit: Some(submit),
    flush: Some(flush),
    destroy: Some(destroy),
    last_error: Some(last_error),
    render_metrics: None,
};

/// The plugin's entry point.
#[no_mangle]
pub extern "C" fn mint_backend_entry() -> *const mint_backend_api {
    &API
}
