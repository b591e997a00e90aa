//! The auditor: what a vendor creates once and calls from its serving threads.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use crossbeam_utils::sync::ShardedLock;

use crate::capture::{self, Assembly};
use crate::config::{Config, HeadConfig};
use crate::error::{Error, Result};
use crate::head::HeadModel;
use crate::metrics::{DropReason, Identity, Metrics, MetricsServer, Render, Verdict};
use crate::model::{TappedModel, TappedRunner};
use crate::pipeline::{Admission, Job, Pool};
use crate::results::ResultSink;
use crate::sampling::Sampler;
use crate::tensor::TensorView;
use crate::worker::{self, Delivery, HeadScorer, Scorer, WorkerContext};

/// What one submit call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubmitReport {
    /// Samples in the call.
    pub seen: usize,
    /// Samples chosen for audit by sampling.
    pub chosen: usize,
    /// Samples queued for the head.
    pub accepted: usize,
}

/// Counters of an auditor since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub seen: u64,
    pub submitted: u64,
    pub audited_member: u64,
    pub audited_non_member: u64,
    /// Dropped samples, indexed like [`DropReason::ALL`].
    pub dropped: [u64; DropReason::ALL.len()],
    /// Samples queued or being scored now.
    pub queue_depth: u64,
}

impl Stats {
    pub fn audited(&self) -> u64 {
        self.audited_member + self.audited_non_member
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }
}

/// What closing the auditor did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReport {
    /// Samples scored while closing.
    pub drained: u64,
    /// Samples still queued at the deadline, dropped as `shutdown` (each also reached the
    /// result sink with that outcome).
    pub abandoned: u64,
    /// The counters once every worker stopped: `submitted = audited + dropped` holds here.
    pub stats: Stats,
}

/// Audits samples during the vendor's inference.
///
/// `Auditor` is `Send + Sync`: share one (e.g. in an `Arc`) between all serving threads.
pub struct Auditor {
    config: Config,
    assembly: Assembly,
    sampler: Sampler,
    admission: Arc<Admission>,
    pool: Arc<Pool>,
    delivery: Arc<Delivery>,
    sender: ShardedLock<Option<Sender<Job>>>,
    closing: AtomicBool,
    drain_deadline: Arc<OnceLock<Instant>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    close_report: Mutex<Option<CloseReport>>,
    http: Mutex<Option<MetricsServer>>,
    http_addr: Option<SocketAddr>,
    head_sha256: String,
    /// The registry, and a backend plugin's own metrics when there is one.
    render: Render,
    /// The audited model, compiled on the first [`Auditor::infer`].
    model: OnceLock<std::result::Result<TappedModel, String>>,
    runners: thread_local::ThreadLocal<RefCell<Option<TappedRunner>>>,
}

/// How long `Drop` lets the queue drain when the owner never called [`Auditor::close`].
const DROP_DRAIN: Duration = Duration::from_secs(5);

impl Auditor {
    /// Starts an auditor without a result sink (results reach the metrics only).
    pub fn new(config: Config) -> Result<Auditor> {
        Auditor::build(config, None)
    }

    /// Starts an auditor whose results also reach `sink`, on the worker threads.
    pub fn with_sink(config: Config, sink: Arc<dyn ResultSink>) -> Result<Auditor> {
        Auditor::build(config, Some(sink))
    }

    fn build(config: Config, sink: Option<Arc<dyn ResultSink>>) -> Result<Auditor> {
        config.validate()?;
        let head_taps = config.head_taps();
        let (assembly, byte_cap) = match &config.head {
            HeadConfig::Vanilla { .. } => {
                (Assembly::features(&config.taps, &head_taps, config.capture.check_finite), None)
            }
            HeadConfig::Cnn { copy_budget_bytes, .. } => {
                let tap = &config.taps[head_taps[0]];
                let [h, w] = tap.spatial.expect("validated: CNN taps have a spatial size");
                (Assembly::Map { tap: head_taps[0], chw: [tap.channels, h, w] }, Some(*copy_budget_bytes))
            }
        };
        let width = assembly.width();
        let max_batch = config.batching.max_batch;

        // What scores, loaded first: a bad head or plugin must fail before any thread starts.
        enum Scoring {
            Head(HeadModel),
            Plugin(Arc<crate::backend::Plugin>),
        }
        let (head_kind, head_sha256, scoring) = match &config.head {
            HeadConfig::Vanilla { path, sha256, output, .. } => {
                let head = HeadModel::load(path, Some(sha256), &[width], *output)?.with_batch_plans(&[1, max_batch])?;
                ("vanilla", head.sha256().to_string(), Scoring::Head(head))
            }
            HeadConfig::Cnn { backend, .. } => {
                let (plugin, digest) = crate::backend::load(backend)?;
                ("cnn", digest, Scoring::Plugin(plugin))
            }
        };

        let admission = Arc::new(Admission::new(config.queue.capacity, byte_cap));
        let depth = Arc::clone(&admission);
        let identity = Identity {
            model_id: config.model.id.clone(),
            model_version: config.model.version.clone(),
            head_kind,
            head_sha256: head_sha256.clone(),
        };
        let metrics =
            Metrics::new(&identity, config.metrics.score_buckets.clone(), config.queue.capacity, move || {
                depth.depth() as i64
            })?;
        let delivery = Arc::new(Delivery::new(metrics, sink, config.threshold()));

        let (backend, mut scorers): (Option<Arc<crate::backend::Backend>>, Vec<Box<dyn Scorer>>) = match scoring {
            Scoring::Head(head) => {
                let scorers = (0..config.workers)
                    .map(|_| Ok(Box::new(HeadScorer::new(head.runner()?, max_batch, width)) as Box<dyn Scorer>))
                    .collect::<Result<_>>()?;
                (None, scorers)
            }
            Scoring::Plugin(plugin) => {
                let HeadConfig::Cnn { backend, .. } = &config.head else { unreachable!() };
                let (instance, scorers) = crate::backend::scorers(
                    plugin,
                    backend,
                    &config,
                    &assembly,
                    &config.base_dir,
                    Arc::clone(&delivery),
                )?;
                (Some(instance), scorers)
            }
        };
        let render: Render = {
            let delivery = Arc::clone(&delivery);
            let backend = backend.clone();
            Arc::new(move || render_all(&delivery, backend.as_deref()))
        };
        let http = match &config.metrics.http {
            Some(http) => Some(MetricsServer::start(&http.listen, Arc::clone(&render))?),
            None => None,
        };
        let http_addr = http.as_ref().map(MetricsServer::addr);
        let pool = Arc::new(Pool::new(config.workers * 4 + 64));
        let drain_deadline = Arc::new(OnceLock::new());
        let (tx, rx) = crossbeam_channel::bounded(config.queue.capacity);

        let mut workers = Vec::with_capacity(config.workers);
        for (i, scorer) in scorers.drain(..).enumerate() {
            let ctx = WorkerContext {
                delivery: Arc::clone(&delivery),
                admission: Arc::clone(&admission),
                pool: Arc::clone(&pool),
                drain_deadline: Arc::clone(&drain_deadline),
                max_batch,
                max_wait: config.batching.max_wait(),
                width,
            };
            let rx = rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("mint-worker-{i}"))
                .spawn(move || worker::run(rx, ctx, scorer))
                .map_err(|e| Error::io("worker thread", e))?;
            workers.push(handle);
        }

        Ok(Auditor {
            sampler: Sampler::new(config.sampling.one_in, config.sampling.salt),
            config,
            assembly,
            admission,
            pool,
            delivery,
            sender: ShardedLock::new(Some(tx)),
            closing: AtomicBool::new(false),
            drain_deadline,
            workers: Mutex::new(workers),
            close_report: Mutex::new(None),
            http: Mutex::new(http),
            http_addr,
            head_sha256,
            render,
            model: OnceLock::new(),
            runners: thread_local::ThreadLocal::new(),
        })
    }

    /// The configuration the auditor runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Digest of the head file (Vanilla) or backend library (CNN) in use.
    pub fn head_sha256(&self) -> &str {
        &self.head_sha256
    }

    /// Hands over one batch of samples: their ids and one tensor per configured tap, in the
    /// configuration's order. Reads the chosen samples once (reducing maps to per-channel
    /// maxima, or copying the CNN tap), queues them without blocking, and returns.
    ///
    /// Errors say what was lost and why; each lost sample is also counted as dropped.
    /// [`Error::NonFinite`] means the other samples of the batch *were* accepted.
    pub fn submit(&self, ids: &[u64], taps: &[TensorView<'_>]) -> Result<SubmitReport> {
        let started = Instant::now();
        let outcome = self.submit_inner(ids, taps);
        self.metrics().capture_seconds.observe(started.elapsed().as_secs_f64());
        outcome
    }

    fn submit_inner(&self, ids: &[u64], taps: &[TensorView<'_>]) -> Result<SubmitReport> {
        let metrics = self.metrics();
        metrics.seen.inc_by(ids.len() as u64);
        thread_local! {
            static CHOSEN: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
        }
        CHOSEN.with_borrow_mut(|chosen| {
            chosen.clear();
            chosen.extend((0..ids.len()).filter(|&i| self.sampler.selects(ids[i])));
            let k = chosen.len();
            let mut report = SubmitReport { seen: ids.len(), chosen: k, accepted: 0 };
            metrics.submitted.inc_by(k as u64);
            let lose = |reason: DropReason, n: usize, error: Error| {
                metrics.dropped(reason).inc_by(n as u64);
                Err(error)
            };
            if self.closing.load(Ordering::Acquire) {
                return lose(DropReason::Closed, k, Error::Closed);
            }
            // Shapes are checked even when sampling chose nothing, so that malformed input
            // is reported on every call, not one call in N.
            if let Err(e) = capture::check_views(&self.config.taps, taps, ids.len(), &self.assembly) {
                return lose(DropReason::InvalidInput, k, e);
            }
            if k == 0 {
                return Ok(report);
            }
            let record_bytes = self.assembly.width() * std::mem::size_of::<f32>();
            if let Err(reason) = self.admission.reserve(k, k * record_bytes) {
                let error = match reason {
                    DropReason::OverBudget => Error::OverBudget {
                        samples: k,
                        bytes: k * record_bytes,
                        budget: match &self.config.head {
                            HeadConfig::Cnn { copy_budget_bytes, .. } => *copy_budget_bytes,
                            HeadConfig::Vanilla { .. } => usize::MAX,
                        },
                    },
                    _ => Error::QueueFull { samples: k, capacity: self.config.queue.capacity },
                };
                return lose(reason, k, error);
            }
            // Pooled buffers come back empty; `assemble` appends.
            let (mut job_ids, mut records) = self.pool.take();
            let rejected = capture::assemble(&self.assembly, taps, ids, chosen, &mut records, &mut job_ids);
            let accepted = job_ids.len();
            if let Some(r) = &rejected {
                self.admission.release(r.count, r.count * record_bytes);
                metrics.dropped(DropReason::NonFinite).inc_by(r.count as u64);
            }
            if accepted > 0 {
                let job = Job { ids: job_ids, records, enqueued: Instant::now() };
                let sender = self.sender.read().unwrap_or_else(|e| e.into_inner());
                let sent = match sender.as_ref() {
                    Some(tx) => tx.try_send(job).map_err(|e| match e {
                        TrySendError::Full(job) => (job, DropReason::QueueFull),
                        TrySendError::Disconnected(job) => (job, DropReason::Closed),
                    }),
                    None => Err((job, DropReason::Closed)),
                };
                drop(sender);
                if let Err((job, reason)) = sent {
                    self.admission.release(accepted, job.bytes());
                    self.pool.give(job.ids, job.records);
                    let error = match reason {
                        DropReason::Closed => Error::Closed,
                        _ => Error::QueueFull { samples: accepted, capacity: self.config.queue.capacity },
                    };
                    return lose(reason, accepted, error);
                }
            } else {
                self.pool.give(job_ids, records);
            }
            report.accepted = accepted;
            match rejected {
                Some(r) => Err(Error::NonFinite {
                    rejected: r.count,
                    total: k,
                    first_id: r.first_id,
                    tap: self.config.taps[r.tap].name.clone(),
                }),
                None => Ok(report),
            }
        })
    }

    /// Runs the audited model (`model.onnx` of the configuration) on `n = ids.len()` input
    /// samples stored back to back in `inputs`, writes the model's first output into `outputs`
    /// (`n ×` its per-sample size), and submits the configured taps as [`Auditor::submit`]
    /// does. For vendors who let mint-audit run their model. The model is compiled once, on
    /// the first call; each calling thread keeps its own cheap state.
    ///
    /// The model's output is written even when the audit of the batch fails (the error then
    /// says why): serving never depends on auditing.
    pub fn infer(&self, ids: &[u64], inputs: &[f32], outputs: &mut [f32]) -> Result<SubmitReport> {
        let model = self.audited_model()?;
        let cell = self.runners.get_or(|| RefCell::new(None));
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(model.runner()?);
        }
        let runner = slot.as_mut().expect("just set");
        runner.run(inputs, ids.len())?;
        let produced = runner.model_output()?;
        if produced.len() != outputs.len() {
            return Err(Error::InvalidInput(format!(
                "the model produced {} output values for {} samples, but the output buffer holds {}",
                produced.len(),
                ids.len(),
                outputs.len()
            )));
        }
        outputs.copy_from_slice(produced);
        let views = runner.views()?;
        self.submit(ids, &views)
    }

    /// The audited model run by [`Auditor::infer`], compiled on first use.
    pub fn audited_model(&self) -> Result<&TappedModel> {
        let compiled = self.model.get_or_init(|| {
            let (Some(onnx), Some(shape)) = (&self.config.model.onnx, &self.config.model.input_shape) else {
                return Err("model.onnx and model.input_shape are needed to run the audited model".into());
            };
            let tensors: Option<Vec<&str>> = self.config.taps.iter().map(|t| t.tensor.as_deref()).collect();
            let Some(tensors) = tensors else {
                return Err("every tap needs a `tensor` (its name in the ONNX model) to run the audited model".into());
            };
            TappedModel::load(onnx, &tensors, shape).map_err(|e| e.to_string())
        });
        compiled.as_ref().map_err(|message| Error::config("model.onnx", message.clone()))
    }

    /// Counts a batch that could not even be read (a malformed tensor descriptor, caught by a
    /// binding before [`Auditor::submit`]): its samples chosen by sampling are submitted and
    /// dropped as `invalid_input`, so the loss shows in the metrics like any other.
    pub fn count_unreadable(&self, ids: &[u64]) {
        let m = self.metrics();
        let chosen = ids.iter().filter(|&&id| self.sampler.selects(id)).count() as u64;
        m.seen.inc_by(ids.len() as u64);
        m.submitted.inc_by(chosen);
        m.dropped(DropReason::InvalidInput).inc_by(chosen);
    }

    /// The auditor's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.delivery.metrics
    }

    /// The metrics in Prometheus' text format (with a backend plugin's own, when it has some).
    pub fn render_metrics(&self) -> String {
        (self.render)()
    }

    /// Address of the built-in `/metrics` endpoint, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The latest failure seen on a worker (head or backend), if any.
    pub fn last_worker_error(&self) -> Option<String> {
        self.delivery.last_error()
    }

    /// Counters since the auditor was created.
    pub fn stats(&self) -> Stats {
        let m = self.metrics();
        Stats {
            seen: m.seen.get(),
            submitted: m.submitted.get(),
            audited_member: m.audited(Verdict::Member).get(),
            audited_non_member: m.audited(Verdict::NonMember).get(),
            dropped: DropReason::ALL.map(|r| m.dropped(r).get()),
            queue_depth: self.admission.depth() as u64,
        }
    }

    /// Stops accepting samples, scores what is queued until `timeout` has passed, drops (as
    /// `shutdown`) whatever is left, and stops the workers. Later calls return the first report.
    /// The metrics stay readable (and the endpoint up) until the auditor is dropped.
    pub fn close(&self, timeout: Duration) -> CloseReport {
        let mut report = self.close_report.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(done) = *report {
            return done;
        }
        let before = self.stats();
        self.closing.store(true, Ordering::Release);
        let _ = self.drain_deadline.set(Instant::now() + timeout);
        // Dropping the only sender lets the workers drain the queue and then stop. The write
        // lock waits for submits that are sending right now.
        self.sender.write().unwrap_or_else(|e| e.into_inner()).take();
        for handle in self.workers.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = handle.join();
        }
        let stats = self.stats();
        let done = CloseReport {
            drained: stats.audited() - before.audited(),
            abandoned: stats.dropped(DropReason::Shutdown) - before.dropped(DropReason::Shutdown),
            stats,
        };
        *report = Some(done);
        done
    }
}

/// The auditor's registry, then the backend plugin's own series.
fn render_all(delivery: &Delivery, backend: Option<&crate::backend::Backend>) -> String {
    let mut text = delivery.metrics.render();
    if let Some(b) = backend {
        text.push_str(&b.render_metrics());
    }
    text
}

impl Drop for Auditor {
    fn drop(&mut self) {
        self.close(DROP_DRAIN);
        self.http.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
