//! The sender threads: one `infer` request at a time each, with timeouts, retries with
//! exponential backoff (connection errors, timeouts, 5xx and 429; other 4xx are final), and
//! exactly one answer to the host per sample.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mint_backend_abi::Host;

use crate::codec::{parse_scores, MAX_RESPONSE_BYTES};
use crate::config::TritonConfig;
use crate::metrics::Metrics;

/// One `infer` request: the samples' ids and the HTTP body (JSON header, then the maps).
pub(crate) struct Job {
    pub(crate) ids: Vec<u64>,
    pub(crate) body: Vec<u8>,
    pub(crate) header_len: usize,
}

/// Samples submitted and not answered yet, and a way to wait for none.
#[derive(Default)]
pub(crate) struct Outstanding {
    count: Mutex<usize>,
    idle: Condvar,
}

impl Outstanding {
    pub(crate) fn add(&self, n: usize) {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += n;
    }

    pub(crate) fn done(&self, n: usize) {
        let mut c = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *c = c.saturating_sub(n);
        if *c == 0 {
            self.idle.notify_all();
        }
    }

    pub(crate) fn wait(&self, timeout: Duration) -> usize {
        let c = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let (c, _) = self.idle.wait_timeout_while(c, timeout, |c| *c > 0).unwrap_or_else(|e| e.into_inner());
        *c
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into()
}

/// Waits until the server says the model is ready, or the deadline passes.
pub(crate) fn wait_ready(config: &TritonConfig, model_url: &str) -> Result<(), String> {
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

/// A sender thread: one request at a time, with timeouts and retries.
pub(crate) struct RequestSender {
    pub(crate) rx: Receiver<Job>,
    pub(crate) config: TritonConfig,
    pub(crate) infer_url: String,
    pub(crate) host: Host,
    pub(crate) outstanding: Arc<Outstanding>,
    pub(crate) stopping: Arc<AtomicBool>,
    pub(crate) metrics: Arc<Metrics>,
}

/// Whether a failed attempt may succeed if tried again.
enum Attempt {
    Retry(String),
    GiveUp(String),
}

impl RequestSender {
    pub(crate) fn run(self) {
        let agent = agent(Duration::from_millis(self.config.timeout_ms));
        while let Ok(job) = self.rx.recv() {
            let n = job.ids.len();
            if self.stopping.load(Ordering::Acquire) {
                // Cancelled or destroyed: the host abandons these (counted as `shutdown`).
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
                if self.pause(backoff) {
                    return Err("cancelled before a retry".into());
                }
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

    /// Sleeps `d`, waking early on a cancel; `true` when cancelled.
    fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stopping.load(Ordering::Acquire) {
                return true;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
        }
        self.stopping.load(Ordering::Acquire)
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
            .limit(MAX_RESPONSE_BYTES)
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
