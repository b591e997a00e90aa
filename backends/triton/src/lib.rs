//! The NVIDIA Triton backend of mint-audit (`libmint_backend_triton.so`): forwards batches of
//! full activation maps to a CNN MINT head served by Triton (or any KServe v2 server), the
//! existing engine for scaling GPU inference beyond one box.
//!
//! Each batch becomes one KServe v2 `infer` request over HTTP with the binary tensor
//! extension (a JSON header, then the raw FP32 maps). A fixed set of sender threads bounds the
//! requests in flight: `submit` copies the batch and blocks while all of them are busy, which
//! is the back-pressure the auditor's queue then absorbs (and counts, when full). Requests time
//! out, and are retried with exponential backoff on connection errors, timeouts and 5xx; 4xx
//! are not retried. Every sample is answered once: scores, or a failure with the last error.
//!
//! Configuration (`backend.config` of the auditor's), with defaults:
//! `{"url": "http://127.0.0.1:8000", "model": "mint_cnn", "version": "", "input": "maps",
//!   "output": "score", "output_kind": "probability", "timeout_ms": 5000, "retries": 3,
//!   "backoff_ms": 50, "max_in_flight": 4, "ready_timeout_ms": 10000, "sha256": null}`
//! `sha256` is not checked here (the head lives on the server): it is what the auditor reports
//! as the head's identity.

mod metrics;

use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mint_backend_abi::support;
use mint_backend_abi::*;
use serde::Deserialize;

use metrics::Metrics;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TritonConfig {
    #[serde(default = "default_url")]
    url: String,
    #[serde(default = "default_model")]
    model: String,
    #[serde(default)]
    version: String,
    #[serde(default = "default_input")]
    input: String,
    #[serde(default = "default_output")]
    output: String,
    #[serde(default)]
    output_kind: OutputKind,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default = "default_backoff")]
    backoff_ms: u64,
    #[serde(default = "default_in_flight")]
    max_in_flight: usize,
    #[serde(default = "default_ready_timeout")]
    ready_timeout_ms: u64,
    #[serde(default)]
    #[allow(dead_code)] // reported by the host as the head's identity
    sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum OutputKind {
    #[default]
    Probability,
    Logit,
}

fn default_url() -> String {
    "http://127.0.0.1:8000".into()
}
fn default_model() -> String {
    "mint_cnn".into()
}
fn default_input() -> String {
    "maps".into()
}
fn default_output() -> String {
    "score".into()
}
fn default_timeout() -> u64 {
    5000
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> u64 {
    50
}
fn default_in_flight() -> usize {
    4
}
fn default_ready_timeout() -> u64 {
    10_000
}

/// The host's callbacks, usable from the sender threads.
#[derive(Clone, Copy)]
struct Host {
    data: *mut c_void,
    on_scores: unsafe extern "C" fn(*mut c_void, *const u64, *const f32, usize),
    on_failure: unsafe extern "C" fn(*mut c_void, *const u64, usize, *const c_char),
}

// SAFETY: the ABI makes the host's callbacks and data usable from any thread.
unsafe impl Send for Host {}
unsafe impl Sync for Host {}

impl Host {
    fn scores(&self, ids: &[u64], scores: &[f32]) {
        // SAFETY: the host's callback, with arrays valid for the call.
        unsafe { (self.on_scores)(self.data, ids.as_ptr(), scores.as_ptr(), ids.len()) }
    }

    fn failure(&self, ids: &[u64], message: &str) {
        let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: as above.
        unsafe { (self.on_failure)(self.data, ids.as_ptr(), ids.len(), c.as_ptr()) }
    }
}

/// One `infer` request: the samples' ids and the HTTP body (JSON header, then the maps).
struct Job {
    ids: Vec<u64>,
    body: Vec<u8>,
    header_len: usize,
}

/// Samples submitted and not answered yet, and a way to wait for none.
#[derive(Default)]
struct Outstanding {
    count: Mutex<usize>,
    idle: Condvar,
}

impl Outstanding {
    fn add(&self, n: usize) {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += n;
    }

    fn done(&self, n: usize) {
        let mut c = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *c = c.saturating_sub(n);
        if *c == 0 {
            self.idle.notify_all();
        }
    }

    fn wait(&self, timeout: Duration) -> usize {
        let c = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let (c, _) = self.idle.wait_timeout_while(c, timeout, |c| *c > 0).unwrap_or_else(|e| e.into_inner());
        *c
    }
}

struct Instance {
    config: TritonConfig,
    sample_shape: [usize; 3],
    jobs: Mutex<Option<crossbeam_channel::Sender<Job>>>,
    senders: Mutex<Vec<JoinHandle<()>>>,
    outstanding: Arc<Outstanding>,
    stopping: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

fn guarded(f: impl FnOnce() -> Result<(), String>) -> i32 {
    support::guarded("Triton", f)
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into()
}

/// Waits until the server says the model is ready, or the deadline passes.
fn wait_ready(config: &TritonConfig, model_url: &str) -> Result<(), String> {
    let agent = agent(Duration::from_millis(2000));
    let deadline = Instant::now() + Duration::from_millis(config.ready_timeout_ms);
    loop {
        let last = match agent.get(&format!("{model_url}/ready")).call() {
            Ok(r) if r.status() == 200 => return Ok(()),
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "model '{}' at {} is not ready after {} ms: {last}",
                config.model, config.url, config.ready_timeout_ms
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

unsafe extern "C" fn create(
    config_json: *const c_char,
    options: *const mint_backend_options,
    host: *const mint_backend_host,
    out: *mut *mut mint_backend,
) -> i32 {
    guarded(|| {
        // SAFETY: valid for the call, per the ABI.
        let (Some(options), Some(host)) = (unsafe { options.as_ref() }, unsafe { host.as_ref() }) else {
            return Err("NULL options or host".into());
        };
        if config_json.is_null() || out.is_null() {
            return Err("NULL config or out".into());
        }
        let json = unsafe { CStr::from_ptr(config_json) }.to_str().map_err(|e| e.to_string())?;
        let config: TritonConfig = serde_json::from_str(json).map_err(|e| format!("configuration: {e}"))?;
        if config.max_in_flight == 0 || config.timeout_ms == 0 {
            return Err("configuration: max_in_flight and timeout_ms must be at least 1".into());
        }
        let host = Host {
            data: host.host_data,
            on_scores: host.on_scores.ok_or("the host gave no on_scores")?,
            on_failure: host.on_failure.ok_or("the host gave no on_failure")?,
        };
        let base = config.url.trim_end_matches('/');
        let model_url = match config.version.as_str() {
            "" => format!("{base}/v2/models/{}", config.model),
            v => format!("{base}/v2/models/{}/versions/{v}", config.model),
        };
        wait_ready(&config, &model_url)?;

        let metrics = Arc::new(Metrics::new().map_err(|e| e.to_string())?);
        let outstanding = Arc::new(Outstanding::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::bounded::<Job>(config.max_in_flight);
        let infer_url = format!("{model_url}/infer");
        let mut senders = Vec::with_capacity(config.max_in_flight);
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
            let handle = std::thread::Builder::new()
                .name(format!("mint-triton-{i}"))
                .spawn(move || sender.run())
                .map_err(|e| e.to_string())?;
            senders.push(handle);
        }
        let instance = Box::new(Instance {
            config,
            sample_shape: [options.channels, options.height, options.width],
            jobs: Mutex::new(Some(tx)),
            senders: Mutex::new(senders),
            outstanding,
            stopping,
            metrics,
        });
        unsafe { *out = Box::into_raw(instance) as *mut mint_backend };
        Ok(())
    })
}

/// A sender thread: one request at a time, with timeouts and retries.
struct RequestSender {
    rx: Receiver<Job>,
    config: TritonConfig,
    infer_url: String,
    host: Host,
    outstanding: Arc<Outstanding>,
    stopping: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

/// Whether a failed attempt may succeed if tried again.
enum Attempt {
    Retry(String),
    GiveUp(String),
}

impl RequestSender {
    fn run(self) {
        let agent = agent(Duration::from_millis(self.config.timeout_ms));
        while let Ok(job) = self.rx.recv() {
            let n = job.ids.len();
            if self.stopping.load(Ordering::Acquire) {
                // Destroying: the host already counted these as abandoned.
                self.outstanding.done(n);
                continue;
            }
            self.metrics.in_flight.add(n as i64);
            let outcome = self.send_with_retries(&agent, &job);
            self.metrics.in_flight.sub(n as i64);
            match outcome {
                Ok(scores) => {
                    self.metrics.samples_scored.inc_by(n as u64);
                    self.host.scores(&job.ids, &scores);
                }
                Err(message) => {
                    self.metrics.samples_failed.inc_by(n as u64);
                    self.host.failure(&job.ids, &message);
                }
            }
            self.outstanding.done(n);
        }
    }

    fn send_with_retries(&self, agent: &ureq::Agent, job: &Job) -> Result<Vec<f32>, String> {
        let mut backoff = Duration::from_millis(self.config.backoff_ms);
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                self.metrics.retries.inc();
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            let started = Instant::now();
            let result = self.send(agent, job);
            self.metrics.request_seconds.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(scores) => {
                    self.metrics.requests_ok.inc();
                    return Ok(scores);
                }
                Err(Attempt::GiveUp(message)) => {
                    self.metrics.requests_failed.inc();
                    return Err(message);
                }
                Err(Attempt::Retry(message)) => {
                    self.metrics.requests_failed.inc();
                    if attempt == self.config.retries || self.stopping.load(Ordering::Acquire) {
                        return Err(format!("{message} (after {} attempts)", attempt + 1));
                    }
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn send(&self, agent: &ureq::Agent, job: &Job) -> Result<Vec<f32>, Attempt> {
        let response = agent
            .post(&self.infer_url)
            .header("Inference-Header-Content-Length", job.header_len.to_string())
            .content_type("application/octet-stream")
            .send(&job.body[..])
            .map_err(|e| Attempt::Retry(format!("POST {}: {e}", self.infer_url)))?;
        let status = response.status().as_u16();
        let header_len = response
            .headers()
            .get("Inference-Header-Content-Length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body = response
            .into_body()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| Attempt::Retry(format!("reading the response: {e}")))?;
        if status != 200 {
            let text = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
            let message = format!("Triton answered HTTP {status}: {text}");
            return Err(if status >= 500 || status == 429 {
                Attempt::Retry(message)
            } else {
                Attempt::GiveUp(message)
            });
        }
        parse_scores(&body, header_len, &self.config, job.ids.len()).map_err(Attempt::GiveUp)
    }
}

/// Scores of an `infer` response, binary or JSON, as probabilities.
fn parse_scores(body: &[u8], header_len: Option<usize>, config: &TritonConfig, n: usize) -> Result<Vec<f32>, String> {
    let json_len = header_len.unwrap_or(body.len()).min(body.len());
    let header: serde_json::Value =
        serde_json::from_slice(&body[..json_len]).map_err(|e| format!("the response header is not JSON: {e}"))?;
    let outputs = header["outputs"].as_array().ok_or("the response has no outputs")?;
    // Binary outputs follow the header in the order the header lists them.
    let mut offset = json_len;
    let mut scores = None;
    for o in outputs {
        let size = o["parameters"]["binary_data_size"].as_u64().map(|s| s as usize);
        if o["name"] == config.output.as_str() {
            if o["datatype"] != "FP32" {
                return Err(format!("output '{}' is {}, not FP32", config.output, o["datatype"]));
            }
            scores = Some(match size {
                Some(size) => {
                    let bytes = body.get(offset..offset + size).ok_or("the binary output is truncated")?;
                    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect::<Vec<f32>>()
                }
                None => o["data"]
                    .as_array()
                    .ok_or("the output has no data")?
                    .iter()
                    .map(|v| v.as_f64().map(|x| x as f32).ok_or("non-numeric score"))
                    .collect::<Result<Vec<f32>, _>>()?,
            });
        }
        offset += size.unwrap_or(0);
    }
    let mut scores = scores.ok_or_else(|| format!("the response has no output '{}'", config.output))?;
    if scores.len() != n {
        return Err(format!("{} scores for {n} samples", scores.len()));
    }
    if config.output_kind == OutputKind::Logit {
        for s in &mut scores {
            *s = 1.0 / (1.0 + (-*s).exp());
        }
    }
    Ok(scores)
}

/// The KServe v2 binary-extension request for a batch.
fn request_body(config: &TritonConfig, shape: [usize; 3], maps: &[f32], n: usize) -> (Vec<u8>, usize) {
    let bytes = std::mem::size_of_val(maps);
    let header = serde_json::json!({
        "inputs": [{
            "name": config.input,
            "shape": [n, shape[0], shape[1], shape[2]],
            "datatype": "FP32",
            "parameters": {"binary_data_size": bytes},
        }],
        "outputs": [{"name": config.output, "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = Vec::with_capacity(header.len() + bytes);
    body.extend_from_slice(header.as_bytes());
    for x in maps {
        body.extend_from_slice(&x.to_le_bytes());
    }
    (body, header.len())
}

unsafe extern "C" fn submit(backend: *mut mint_backend, batch: *const mint_backend_batch) -> i32 {
    guarded(|| {
        // SAFETY: an instance from `create`; the batch is valid for the call.
        let instance = unsafe { (backend as *const Instance).as_ref() }.ok_or("NULL backend")?;
        let batch = unsafe { batch.as_ref() }.ok_or("NULL batch")?;
        let n = batch.count;
        if n == 0 {
            return Ok(());
        }
        let per: usize = instance.sample_shape.iter().product();
        let ids = unsafe { std::slice::from_raw_parts(batch.sample_ids, n) }.to_vec();
        let maps = unsafe { std::slice::from_raw_parts(batch.maps, n * per) };
        // The maps are the host's for this call only: the request body is our copy.
        let (body, header_len) = request_body(&instance.config, instance.sample_shape, maps, n);
        let jobs = instance.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let jobs = jobs.ok_or("the backend is being destroyed")?;
        instance.outstanding.add(n);
        // Blocks while `max_in_flight` requests are pending: back-pressure on the host's worker.
        if jobs.send(Job { ids, body, header_len }).is_err() {
            instance.outstanding.done(n);
            return Err("the backend is being destroyed".into());
        }
        Ok(())
    })
}

unsafe extern "C" fn flush(backend: *mut mint_backend, timeout_ms: u32) -> usize {
    // SAFETY: an instance from `create`.
    match unsafe { (backend as *const Instance).as_ref() } {
        Some(instance) => instance.outstanding.wait(Duration::from_millis(timeout_ms as u64)),
        None => 0,
    }
}

unsafe extern "C" fn destroy(backend: *mut mint_backend) {
    if backend.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: an instance from `create`, destroyed once.
        let instance = unsafe { Box::from_raw(backend as *mut Instance) };
        // Queued jobs are dropped unanswered (the host abandoned them); requests already on the
        // wire finish or time out, and the threads are joined, so no callback runs afterwards.
        instance.stopping.store(true, Ordering::Release);
        instance.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        for handle in instance.senders.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = handle.join();
        }
    }));
}

unsafe extern "C" fn last_error(_backend: *const mint_backend) -> *const c_char {
    support::last_error()
}

unsafe extern "C" fn render_metrics(
    backend: *const mint_backend,
    buf: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
) -> i32 {
    guarded(|| {
        // SAFETY: an instance from `create`; `buf` holds `capacity` bytes; `out_len` is valid.
        let instance = unsafe { (backend as *const Instance).as_ref() }.ok_or("NULL backend")?;
        let text = instance.metrics.render();
        let needed = text.len() + 1;
        if !out_len.is_null() {
            unsafe { *out_len = needed };
        }
        if capacity < needed || buf.is_null() {
            return Err(format!("{needed} bytes needed"));
        }
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, text.len());
            *buf.add(text.len()) = 0;
        }
        Ok(())
    })
}

static API: mint_backend_api = mint_backend_api {
    abi_major: MINT_BACKEND_ABI_MAJOR,
    abi_minor: MINT_BACKEND_ABI_MINOR,
    struct_size: std::mem::size_of::<mint_backend_api>(),
    name: c"triton".as_ptr(),
    version: concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char,
    create: Some(create),
    submit: Some(submit),
    flush: Some(flush),
    destroy: Some(destroy),
    last_error: Some(last_error),
    render_metrics: Some(render_metrics),
};

/// The plugin's entry point.
#[no_mangle]
pub extern "C" fn mint_backend_entry() -> *const mint_backend_api {
    &API
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: OutputKind) -> TritonConfig {
        let mut c: TritonConfig = serde_json::from_str("{}").unwrap();
        c.output_kind = kind;
        c
    }

    #[test]
    fn binary_and_json_responses_parse() {
        let c = config(OutputKind::Probability);
        let header = r#"{"model_name":"m","outputs":[{"name":"score","datatype":"FP32","shape":[2,1],"parameters":{"binary_data_size":8}}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&0.25f32.to_le_bytes());
        body.extend_from_slice(&0.75f32.to_le_bytes());
        assert_eq!(parse_scores(&body, Some(header.len()), &c, 2).unwrap(), vec![0.25, 0.75]);
        let json = r#"{"outputs":[{"name":"other","datatype":"FP32","shape":[1],"data":[9]},{"name":"score","datatype":"FP32","shape":[2,1],"data":[0.5,0.125]}]}"#;
        assert_eq!(parse_scores(json.as_bytes(), None, &c, 2).unwrap(), vec![0.5, 0.125]);
        assert!(parse_scores(json.as_bytes(), None, &c, 3).unwrap_err().contains("2 scores for 3"));
        let logits = config(OutputKind::Logit);
        let s = parse_scores(
            r#"{"outputs":[{"name":"score","datatype":"FP32","data":[0.0]}]}"#.as_bytes(),
            None,
            &logits,
            1,
        );
        assert_eq!(s.unwrap(), vec![0.5]);
    }

    #[test]
    fn requests_carry_the_binary_maps_after_the_header() {
        let c = config(OutputKind::Probability);
        let (body, header_len) = request_body(&c, [1, 2, 1], &[1.0, 2.0, 3.0, 4.0], 2);
        let header: serde_json::Value = serde_json::from_slice(&body[..header_len]).unwrap();
        assert_eq!(header["inputs"][0]["shape"], serde_json::json!([2, 1, 2, 1]));
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 16);
        assert_eq!(&body[header_len..header_len + 4], &1.0f32.to_le_bytes());
        assert_eq!(body.len(), header_len + 16);
    }

    #[test]
    fn unknown_configuration_keys_are_refused() {
        assert!(serde_json::from_str::<TritonConfig>(r#"{"urll": "x"}"#).is_err());
    }
}
