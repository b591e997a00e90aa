//! CNN heads through backend plugins (`include/mint_backend.h`).
//!
//! The full map of the CNN tap is copied on the vendor's thread into the auditor's queue (a
//! CNN head needs the whole map, and the vendor's buffer is only borrowed for the call); the
//! copies are bounded by `head.copy_budget_bytes`. A worker batches them and submits the batch
//! to the plugin, which answers each sample once, now or later, from any thread. The host keeps
//! the ids it is waiting for, so that every sample ends counted exactly once: scored, failed by
//! the backend, or abandoned at shutdown. A plugin's failures are counted and kept as the
//! last worker error; they never reach the vendor's submit call.

mod plugin;

pub use plugin::link_backend;

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mint_backend_abi::*;

use crate::capture::Assembly;
use crate::config::{BackendConfig, Config};
use crate::delivery::Delivery;
use crate::error::{Error, Result};
use crate::plan::{HeadPlan, Scorer};
use crate::results::DropReason;
use plugin::{text, Plugin};

/// A live backend instance.
pub(crate) struct Backend {
    plugin: Arc<Plugin>,
    functions: plugin::Functions,
    handle: *mut mint_backend,
    /// The callbacks' `host_data`; boxed so its address is stable, dropped after `destroy`.
    host: Box<HostSide>,
    _table: Box<mint_backend_host>,
    /// Workers still running; the last one to finish flushes and abandons what is left.
    workers_left: AtomicUsize,
}

// SAFETY: the plugin contract makes an instance usable from any thread at once
// (include/mint_backend.h); the host side is synchronised.
unsafe impl Send for Backend {}
// SAFETY: as for `Send`.
unsafe impl Sync for Backend {}

/// What the plugin's callbacks reach.
struct HostSide {
    delivery: Arc<Delivery>,
    /// Ids submitted and not answered yet, with the cohort of each submission (vendors may
    /// reuse ids: each is answered once per submission, and while one id is in flight in two
    /// cohorts, which answer goes to which is not defined).
    outstanding: Mutex<HashMap<u64, Vec<u16>>>,
    pending: AtomicUsize,
}

impl HostSide {
    /// Removes answered ids; returns the positions of those that were outstanding, with
    /// their cohorts.
    fn settle(&self, ids: &[u64]) -> (Vec<usize>, Vec<u16>) {
        let mut outstanding = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
        let mut known = Vec::with_capacity(ids.len());
        let mut cohorts = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if let Some(waiting) = outstanding.get_mut(id) {
                cohorts.push(waiting.pop().unwrap_or_default());
                if waiting.is_empty() {
                    outstanding.remove(id);
                }
                known.push(i);
            }
        }
        self.pending.fetch_sub(known.len(), Ordering::AcqRel);
        self.delivery.metrics.set_backend_in_flight(self.pending.load(Ordering::Acquire));
        (known, cohorts)
    }

    fn expect(&self, ids: &[u64], cohorts: &[u16]) {
        let mut outstanding = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
        for (id, &cohort) in ids.iter().zip(cohorts) {
            outstanding.entry(*id).or_default().push(cohort);
        }
        self.pending.fetch_add(ids.len(), Ordering::AcqRel);
        self.delivery.metrics.set_backend_in_flight(self.pending.load(Ordering::Acquire));
    }

    fn scored(&self, ids: &[u64], scores: &[f32]) {
        let (known, cohorts) = self.settle(ids);
        if known.len() != ids.len() {
            self.unexpected(ids.len() - known.len());
        }
        let ids: Vec<u64> = known.iter().map(|&i| ids[i]).collect();
        let scores: Vec<f32> = known.iter().map(|&i| scores[i]).collect();
        self.delivery.scored(&ids, &cohorts, &scores, DropReason::BackendError);
    }

    fn failed(&self, ids: &[u64], message: &str) {
        let (known, cohorts) = self.settle(ids);
        if known.len() != ids.len() {
            self.unexpected(ids.len() - known.len());
        }
        let ids: Vec<u64> = known.iter().map(|&i| ids[i]).collect();
        self.delivery.metrics.backend_error();
        self.delivery.note_error(format!("backend: {message}"));
        self.delivery.dropped(&ids, &cohorts, DropReason::BackendError);
    }

    fn unexpected(&self, n: usize) {
        self.delivery.metrics.backend_error();
        self.delivery.note_error(format!("backend answered {n} samples it was not waiting for (ignored)"));
    }

    /// Takes every id still outstanding, with its cohort.
    fn drain(&self) -> (Vec<u64>, Vec<u16>) {
        let mut outstanding = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
        let (mut ids, mut cohorts) = (Vec::new(), Vec::new());
        for (id, waiting) in outstanding.drain() {
            ids.extend(std::iter::repeat_n(id, waiting.len()));
            cohorts.extend(waiting);
        }
        self.pending.fetch_sub(ids.len(), Ordering::AcqRel);
        self.delivery.metrics.set_backend_in_flight(self.pending.load(Ordering::Acquire));
        (ids, cohorts)
    }
}

// The callbacks run on the plugin's threads: nothing may unwind back into them.

unsafe extern "C" fn on_scores(host_data: *mut c_void, ids: *const u64, scores: *const f32, count: usize) {
    let _ = mint_backend_abi::boundary::catch(|| {
        // SAFETY: `host_data` is our `HostSide`, alive until `destroy` returns; the arrays hold
        // `count` values for the duration of the call.
        let host = unsafe { &*(host_data as *const HostSide) };
        if count == 0 || ids.is_null() || scores.is_null() {
            return;
        }
        // SAFETY: both arrays hold `count` values for the call (non-NULL, checked above).
        let (ids, scores) =
            unsafe { (std::slice::from_raw_parts(ids, count), std::slice::from_raw_parts(scores, count)) };
        host.scored(ids, scores);
    });
}

unsafe extern "C" fn on_failure(host_data: *mut c_void, ids: *const u64, count: usize, message: *const c_char) {
    let _ = mint_backend_abi::boundary::catch(|| {
        // SAFETY: as in `on_scores`; `message` is NUL-terminated or NULL.
        let host = unsafe { &*(host_data as *const HostSide) };
        // SAFETY: NULL or NUL-terminated, per the ABI.
        let message = unsafe { text(message) };
        if count == 0 || ids.is_null() {
            host.delivery.note_error(format!("backend: {message}"));
            return;
        }
        // SAFETY: `count` ids for the call (non-NULL, checked above).
        host.failed(unsafe { std::slice::from_raw_parts(ids, count) }, &message);
    });
}

unsafe extern "C" fn on_log(host_data: *mut c_void, level: u32, message: *const c_char) {
    let _ = mint_backend_abi::boundary::catch(|| {
        // SAFETY: as in `on_scores`.
        let host = unsafe { &*(host_data as *const HostSide) };
        if level <= MINT_BACKEND_LOG_WARN {
            // SAFETY: NULL or NUL-terminated, per the ABI.
            host.delivery.note_error(format!("backend: {}", unsafe { text(message) }));
        }
    });
}

impl Backend {
    /// Creates an instance of `plugin` for maps of `chw`.
    pub(crate) fn create(
        plugin: Arc<Plugin>,
        config: &BackendConfig,
        chw: [usize; 3],
        max_batch: usize,
        base_dir: &Path,
        delivery: Arc<Delivery>,
    ) -> Result<Backend> {
        let fail = |message: String| Error::Backend { library: plugin.path().to_owned(), message };
        let functions = plugin.functions()?;
        let json = CString::new(config.config.to_string()).map_err(|e| fail(e.to_string()))?;
        let base = CString::new(base_dir.to_string_lossy().into_owned()).map_err(|e| fail(e.to_string()))?;
        let host =
            Box::new(HostSide { delivery, outstanding: Mutex::new(HashMap::new()), pending: AtomicUsize::new(0) });
        let table = Box::new(mint_backend_host {
            struct_size: std::mem::size_of::<mint_backend_host>(),
            host_data: &*host as *const HostSide as *mut c_void,
            on_scores: Some(on_scores),
            on_failure: Some(on_failure),
            log: Some(on_log),
        });
        let options = mint_backend_options {
            struct_size: std::mem::size_of::<mint_backend_options>(),
            channels: chw[0],
            height: chw[1],
            width: chw[2],
            max_batch,
            base_dir: base.as_ptr(),
        };
        let mut handle: *mut mint_backend = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `table` and `host` outlive the instance.
        let rc = unsafe { (functions.create)(json.as_ptr(), &options, &*table, &mut handle) };
        if rc != MINT_BACKEND_OK || handle.is_null() {
            let why = plugin.last_error(&functions, std::ptr::null());
            return Err(fail(format!("{} refused its configuration: {why}", plugin.describe())));
        }
        Ok(Backend { plugin, functions, handle, host, _table: table, workers_left: AtomicUsize::new(0) })
    }

    /// The plugin's own metrics, in the Prometheus text format (empty when it has none).
    pub(crate) fn render_metrics(&self) -> String {
        let Some(render) = self.functions.render_metrics else { return String::new() };
        let mut buf = vec![0u8; 16 << 10];
        for _ in 0..3 {
            let mut needed = 0usize;
            // SAFETY: `buf` holds `buf.len()` writable bytes.
            let rc = unsafe { render(self.handle, buf.as_mut_ptr() as *mut c_char, buf.len(), &mut needed) };
            if rc == MINT_BACKEND_OK {
                let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                return String::from_utf8_lossy(&buf[..end]).into_owned();
            }
            if needed <= buf.len() {
                break;
            }
            buf.resize(needed, 0);
        }
        self.host.delivery.metrics.backend_error();
        String::new()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // SAFETY: destroyed once; no callback runs afterwards, so `host` may then be dropped.
        unsafe { (self.functions.destroy)(self.handle) };
    }
}

/// A worker's side of a backend instance.
pub(crate) struct BackendScorer {
    backend: Arc<Backend>,
}

impl Scorer for BackendScorer {
    fn score(&mut self, ids: &[u64], cohorts: &[u16], records: &[f32], delivery: &Delivery) {
        let b = &self.backend;
        b.host.expect(ids, cohorts);
        let batch = mint_backend_batch { sample_ids: ids.as_ptr(), count: ids.len(), maps: records.as_ptr() };
        let started = Instant::now();
        // SAFETY: a live instance; `batch` and its arrays are valid for the call.
        let rc = unsafe { (b.functions.submit)(b.handle, &batch) };
        delivery.metrics.observe_head_batch(started.elapsed().as_secs_f64(), ids.len());
        if rc != MINT_BACKEND_OK {
            let why = b.plugin.last_error(&b.functions, b.handle);
            // None of the batch may be answered after an error (ABI rule); whatever the plugin
            // did answer was settled already.
            b.host.failed(ids, &format!("submit failed: {why}"));
        }
    }

    fn finish(&mut self, deadline: Instant, delivery: &Delivery) {
        let b = &self.backend;
        if b.workers_left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return; // another worker is still submitting; the last one flushes
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // SAFETY: a live instance.
        unsafe { (b.functions.flush)(b.handle, left.as_millis().min(u32::MAX as u128) as u32) };
        let (abandoned, cohorts) = b.host.drain();
        if !abandoned.is_empty() {
            delivery.note_error(format!("backend: {} samples unanswered at shutdown", abandoned.len()));
            delivery.dropped(&abandoned, &cohorts, DropReason::Shutdown);
        }
    }
}

/// A CNN head behind a plugin: the library loaded and checked at start-up, one instance
/// created with the first worker and shared by all of them.
pub(crate) struct BackendPlan {
    plugin: Arc<Plugin>,
    config: BackendConfig,
    digest: String,
    assembly: Assembly,
    chw: [usize; 3],
    copy_budget: usize,
    max_batch: usize,
    base_dir: PathBuf,
    instance: Mutex<Option<Arc<Backend>>>,
}

impl BackendPlan {
    /// Loads the plugin. The head's identity is the `sha256` in the backend's configuration
    /// when it gives one (the head file it runs), else the digest of the library loaded.
    pub(crate) fn load(
        backend: &BackendConfig,
        assembly: Assembly,
        copy_budget: usize,
        config: &Config,
    ) -> Result<BackendPlan> {
        let Assembly::Map { chw, .. } = assembly else {
            return Err(Error::config("head.tap", "a CNN head takes one tap's full map"));
        };
        let plugin = Arc::new(Plugin::load(&backend.library, backend.sha256.as_deref())?);
        let digest = match backend.config.get("sha256").and_then(|v| v.as_str()) {
            Some(sha) => sha.to_ascii_lowercase(),
            None => plugin.sha256().to_string(),
        };
        Ok(BackendPlan {
            plugin,
            config: backend.clone(),
            digest,
            assembly,
            chw,
            copy_budget,
            max_batch: config.batching.max_batch,
            base_dir: config.base_dir.clone(),
            instance: Mutex::new(None),
        })
    }
}

impl HeadPlan for BackendPlan {
    fn kind(&self) -> &'static str {
        "cnn"
    }

    fn sha256(&self) -> &str {
        &self.digest
    }

    fn assembly(&self) -> &Assembly {
        &self.assembly
    }

    fn byte_budget(&self) -> Option<usize> {
        Some(self.copy_budget)
    }

    fn spawn(&self, delivery: &Arc<Delivery>) -> Result<Box<dyn Scorer>> {
        let mut slot = self.instance.lock().unwrap_or_else(|e| e.into_inner());
        let backend = match &*slot {
            Some(b) => Arc::clone(b),
            None => {
                let b = Arc::new(Backend::create(
                    Arc::clone(&self.plugin),
                    &self.config,
                    self.chw,
                    self.max_batch,
                    &self.base_dir,
                    Arc::clone(delivery),
                )?);
                *slot = Some(Arc::clone(&b));
                b
            }
        };
        backend.workers_left.fetch_add(1, Ordering::AcqRel);
        Ok(Box::new(BackendScorer { backend }))
    }

    fn render_metrics(&self) -> String {
        let backend = self.instance.lock().unwrap_or_else(|e| e.into_inner()).clone();
        backend.map(|b| b.render_metrics()).unwrap_or_default()
    }

    fn cancel(&self) {
        let backend = self.instance.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(b) = backend {
            if let Some(cancel) = b.functions.cancel {
                // SAFETY: a live instance; `cancel` may run beside other calls (ABI 1.1).
                unsafe { cancel(b.handle) };
            }
        }
    }
}
