//! The NVIDIA Triton backend of mint-audit (the code of `libmint_backend_triton.so`, which
//! `plugins/triton` exports; [`entry`] is its table, for hosts that link it): forwards batches of
//! full activation maps to a CNN MINT head served by Triton (or any KServe v2 server), the
//! existing engine for scaling GPU inference beyond one box.
//!
//! Each batch becomes one KServe v2 `infer` request over HTTP with the binary tensor
//! extension ([`codec`]). A fixed set of sender threads ([`sender`]) bounds the requests in
//! flight: `submit` copies the batch and blocks while all of them are busy, which is the
//! back-pressure the auditor's queue then absorbs (and counts, when full). Requests time out,
//! and are retried with exponential backoff on connection errors, timeouts and 5xx; 4xx are
//! not retried. Every sample is answered once: scores, or a failure with the last error.
//!
//! Configuration ([`config`], `backend.config` of the auditor's), with defaults:
//! `{"url": "http://127.0.0.1:8000", "model": "mint_cnn", "version": "", "input": "maps",
//!   "output": "score", "output_kind": "probability", "timeout_ms": 5000, "retries": 3,
//!   "backoff_ms": 50, "max_in_flight": 4, "ready_timeout_ms": 10000, "sha256": null}`
//! `sha256` is not checked here (the head lives on the server): it is what the auditor reports
//! as the head's identity.

#![forbid(unsafe_code)]

mod codec;
mod config;
mod metrics;
mod sender;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mint_backend_abi::{Backend, Batch, Host, Options};

use config::TritonConfig;
use metrics::Metrics;
use sender::{Job, Outstanding, RequestSender};

/// A connection to one model on one server, through `max_in_flight` sender threads.
struct TritonBackend {
    config: TritonConfig,
    sample_shape: [usize; 3],
    jobs: Mutex<Option<crossbeam_channel::Sender<Job>>>,
    senders: Mutex<Vec<JoinHandle<()>>>,
    outstanding: Arc<Outstanding>,
    stopping: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Backend for TritonBackend {
    fn create(config: &str, options: &Options, host: Host) -> Result<Self, String> {
        let config = TritonConfig::parse(config)?;
        let model_url = config.model_url();
        sender::wait_ready(&config, &model_url)?;

        let metrics = Arc::new(Metrics::new().map_err(|e| e.to_string())?);
        let outstanding = Arc::new(Outstanding::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::bounded::<Job>(config.max_in_flight);
        let infer_url = format!("{model_url}/infer");
        let mut backend = TritonBackend {
            sample_shape: options.shape(),
            jobs: Mutex::new(Some(tx)),
            senders: Mutex::new(Vec::with_capacity(config.max_in_flight)),
            outstanding: Arc::clone(&outstanding),
            stopping: Arc::clone(&stopping),
            metrics: Arc::clone(&metrics),
            config: config.clone(),
        };
        for i in 0..config.max_in_flight {
            let sender = RequestSender {
                rx: rx.clone(),
                config: config.clone(),
                infer_url: infer_url.clone(),
                host,
                outstanding: Arc::clone(&outstanding),
                stopping: Arc::clone(&stopping),
                metrics: Arc::clone(&metrics),
            };
            // On failure, dropping `backend` stops the threads already started.
            let handle = std::thread::Builder::new()
                .name(format!("mint-triton-{i}"))
                .spawn(move || sender.run())
                .map_err(|e| e.to_string())?;
            backend.senders.get_mut().unwrap_or_else(|e| e.into_inner()).push(handle);
        }
        Ok(backend)
    }

    fn submit(&self, batch: &Batch<'_>) -> Result<(), String> {
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        // The maps are the host's for this call only: the request body is our copy.
        let (body, header_len) = codec::request_body(&self.config, self.sample_shape, batch.maps(), n);
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let jobs = jobs.ok_or("the backend is being destroyed")?;
        self.outstanding.add(n);
        // Blocks while `max_in_flight` requests are pending (back-pressure on the host's
        // worker), but never past a cancel.
        let mut job = Job { ids: batch.ids().to_vec(), body, header_len };
        loop {
            match jobs.send_timeout(job, CANCEL_POLL) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::SendTimeoutError::Timeout(back)) if !self.stopping.load(Ordering::Acquire) => {
                    job = back;
                }
                Err(_) => {
                    self.outstanding.done(n);
                    return Err("cancelled: the auditor is closing".into());
                }
            }
        }
    }

    fn flush(&self, timeout: Duration) -> usize {
        self.outstanding.wait(timeout)
    }

    fn render_metrics(&self) -> Option<String> {
        Some(self.metrics.render())
    }

    fn cancel(&self) {
        // Blocked submits return, queued requests are dropped unanswered, retries stop; a
        // request on the wire ends at its own `timeout_ms`.
        self.stopping.store(true, Ordering::Release);
    }
}

/// How often a submit blocked on back-pressure looks for a cancel.
const CANCEL_POLL: Duration = Duration::from_millis(20);

impl Drop for TritonBackend {
    fn drop(&mut self) {
        // Queued jobs are dropped unanswered (the host abandoned them); requests already on the
        // wire finish or time out, and the threads are joined, so no callback runs afterwards.
        self.stopping.store(true, Ordering::Release);
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        for handle in self.senders.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = handle.join();
        }
    }
}

mint_backend_abi::backend_entry!(TritonBackend, "triton");

/// The response decoder, for the fuzz target in tests/fuzz. Not part of the plugin's ABI.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes an infer response for `n` samples with the default configuration.
    pub fn parse_response(body: &[u8], header_len: Option<usize>, n: usize) -> Result<Vec<f32>, String> {
        let config = crate::config::TritonConfig::parse("{}")?;
        crate::codec::parse_scores(body, header_len, &config, n)
    }
}
