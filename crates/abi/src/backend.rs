//! The safe side of the plugin ABI: what a plugin written in Rust implements, and the host's
//! callbacks as a value it may keep and use from any thread.

use std::ffi::{c_char, c_void, CString};
use std::path::PathBuf;
use std::time::Duration;

use crate::{MINT_BACKEND_LOG_ERROR, MINT_BACKEND_LOG_INFO, MINT_BACKEND_LOG_WARN};

/// A backend: created once per auditor, called from the host's worker threads.
///
/// Dropping the value is `destroy`: when `drop` returns, the backend must never call the
/// [`Host`] again (join its threads first). Every sample of a successful [`Backend::submit`]
/// is answered exactly once through [`Host::scores`] or [`Host::failure`], during the call or
/// later; after an `Err`, none of the batch may be answered (the host counts it).
pub trait Backend: Sized + Send + Sync + 'static {
    /// Creates an instance from the backend's JSON configuration (the `backend.config` object
    /// of the auditor's configuration, as text).
    fn create(config: &str, options: &Options, host: Host) -> Result<Self, String>;

    /// Takes one batch of maps; may block for back-pressure. The batch is borrowed for the
    /// call only: copy what is needed later.
    fn submit(&self, batch: &Batch<'_>) -> Result<(), String>;

    /// Waits until every submitted sample was answered, or `timeout` passed; returns how many
    /// are still outstanding. A backend that answers during `submit` keeps the default.
    fn flush(&self, timeout: Duration) -> usize {
        let _ = timeout;
        0
    }

    /// The host is closing and its deadline has passed: return soon from blocked `submit`s
    /// (with an error), stop retrying, drop work not yet sent (unanswered: the host counts it).
    fn cancel(&self) {}

    /// The backend's own metrics in the Prometheus text format (names starting with
    /// `mint_backend_`), appended to the auditor's; `None` when it has none.
    fn render_metrics(&self) -> Option<String> {
        None
    }
}

/// What the host tells the backend at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// One sample's map is `[channels, height, width]` f32, row-major.
    pub channels: usize,
    /// Rows of one map.
    pub height: usize,
    /// Columns of one map.
    pub width: usize,
    /// No batch holds more samples than this.
    pub max_batch: usize,
    /// Folder of the auditor's configuration, for relative paths in the backend's own.
    pub base_dir: PathBuf,
}

impl Options {
    /// One sample's map shape, `[C, H, W]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// f32 values in one sample's map (checked at creation not to overflow).
    pub fn sample_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// One batch of maps, borrowed for a [`Backend::submit`] call.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    ids: &'a [u64],
    maps: &'a [f32],
    sample_len: usize,
}

impl<'a> Batch<'a> {
    /// A batch of `ids.len()` samples whose maps lie back to back in `maps`; `None` when the
    /// lengths disagree.
    pub fn new(ids: &'a [u64], maps: &'a [f32], sample_len: usize) -> Option<Batch<'a>> {
        (ids.len().checked_mul(sample_len) == Some(maps.len())).then_some(Batch { ids, maps, sample_len })
    }

    /// The samples' ids.
    pub fn ids(&self) -> &'a [u64] {
        self.ids
    }

    /// Every map, back to back: `len() × channels × height × width` f32.
    pub fn maps(&self) -> &'a [f32] {
        self.maps
    }

    /// Sample `i`'s map.
    pub fn map(&self, i: usize) -> &'a [f32] {
        &self.maps[i * self.sample_len..(i + 1) * self.sample_len]
    }

    /// Samples in the batch.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the batch holds no sample.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Severity of a [`Host::log`] line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Something failed; the host keeps it as the auditor's last worker error.
    Error,
    /// Something is wrong but working; kept like an error.
    Warn,
    /// For the record.
    Info,
}

type ScoresFn = unsafe extern "C" fn(*mut c_void, *const u64, *const f32, usize);
type FailureFn = unsafe extern "C" fn(*mut c_void, *const u64, usize, *const c_char);
type LogFn = unsafe extern "C" fn(*mut c_void, u32, *const c_char);

/// The host's callbacks: cheap to copy, usable from any thread until the backend is dropped.
#[derive(Clone, Copy)]
pub struct Host {
    data: *mut c_void,
    on_scores: ScoresFn,
    on_failure: FailureFn,
    log: Option<LogFn>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

// SAFETY: the ABI makes the host's callbacks and `host_data` usable from any thread at once
// until `destroy` returns (include/mint_backend.h); `Host` holds nothing else.
unsafe impl Send for Host {}
// SAFETY: as for `Send`: every method only passes the pointers back to the host's callbacks.
unsafe impl Sync for Host {}

impl Host {
    /// Wraps the host's table; the callbacks must stay valid while the backend lives.
    pub(crate) fn new(data: *mut c_void, on_scores: ScoresFn, on_failure: FailureFn, log: Option<LogFn>) -> Host {
        Host { data, on_scores, on_failure, log }
    }

    /// Answers samples with their scores (probabilities in [0, 1]).
    ///
    /// # Panics
    /// When `ids` and `scores` differ in length: that is a bug of the backend.
    pub fn scores(&self, ids: &[u64], scores: &[f32]) {
        assert_eq!(ids.len(), scores.len(), "one score per sample id");
        // SAFETY: the host's callback, with `ids.len()` readable values in both arrays for the
        // call; `data` is what the host gave with it.
        unsafe { (self.on_scores)(self.data, ids.as_ptr(), scores.as_ptr(), ids.len()) }
    }

    /// Answers samples the backend could not score, with the reason.
    pub fn failure(&self, ids: &[u64], message: &str) {
        let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the host's callback, with `ids.len()` readable ids and a NUL-terminated
        // message, both valid for the call.
        unsafe { (self.on_failure)(self.data, ids.as_ptr(), ids.len(), c.as_ptr()) }
    }

    /// A log line for the host (a host without a log callback ignores it).
    pub fn log(&self, level: LogLevel, message: &str) {
        let Some(log) = self.log else { return };
        let level = match level {
            LogLevel::Error => MINT_BACKEND_LOG_ERROR,
            LogLevel::Warn => MINT_BACKEND_LOG_WARN,
            LogLevel::Info => MINT_BACKEND_LOG_INFO,
        };
        let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the host's callback with a NUL-terminated message valid for the call.
        unsafe { log(self.data, level, c.as_ptr()) }
    }
}
