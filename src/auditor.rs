//! The auditor: what a vendor creates once and calls from its serving threads.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use crossbeam_utils::sync::ShardedLock;

use crate::cohort::Cohort;
use crate::config::Config;
use crate::conformance::Recorder;
use crate::delivery::Delivery;
use crate::error::{Error, Result};
use crate::evidence::{CohortEvidence, Evidence};
use crate::evidence_log::{self, EvidenceLog};
use crate::head;
use crate::intake::{Intake, SubmitReport};
use crate::ledger::{Ledger, Stats};
use crate::metrics::{Identity, Metrics, MetricsServer, Render};
use crate::model::{ServedModel, TappedModel};
use crate::pipeline::{Admission, Job, Pool};
use crate::plan::HeadPlan;
use crate::results::{DropReason, ResultSink};
use crate::sampling::Sampler;
use crate::tensor::TensorView;
use crate::worker::{self, WorkerContext};

/// What closing the auditor did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// Samples scored while closing.
    pub drained: u64,
    /// Samples still queued at the deadline, dropped as `shutdown` (each also reached the
    /// result sink with that outcome).
    pub abandoned: u64,
    /// The counters when closing returned: `submitted = audited + dropped` holds here once
    /// every worker has stopped (`workers_busy == 0`).
    pub stats: Stats,
    /// Workers that had not stopped [`CLOSE_GRACE`] after the deadline: each is inside the
    /// result sink (or a backend that ignored its cancel). Closing returns without them; each
    /// stops on its own once that call returns, and the counters are final from then on.
    pub workers_busy: usize,
    /// Samples such a worker held, not yet counted, when closing returned
    /// (`submitted - audited - dropped`); 0 when `workers_busy` is 0.
    pub in_flight: u64,
}

/// Audits samples during the vendor's inference.
///
/// `Auditor` is `Send + Sync`: share one (e.g. in an `Arc`) between all serving threads.
pub struct Auditor {
    config: Config,
    plan: Arc<dyn HeadPlan>,
    intake: Intake,
    delivery: Arc<Delivery>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// The queue's receiving end, for `close` to settle what a worker stuck past the deadline
    /// leaves queued.
    leftovers: Receiver<Job>,
    drain_deadline: Arc<OnceLock<Instant>>,
    close_report: Mutex<Option<CloseReport>>,
    /// The registry, and a backend plugin's own metrics when there is one.
    render: Render,
    http: Mutex<Option<MetricsServer>>,
    http_addr: Option<SocketAddr>,
    model: ServedModel,
    /// The signed evidence log's writer, when configured.
    evidence_log: Option<EvidenceLog>,
}

/// How often `close` looks whether the workers have stopped, before its deadline.
const CLOSE_POLL: Duration = Duration::from_millis(2);

/// How long past its deadline `close` waits for workers to stop before it returns without
/// them: the most a result sink or backend that does not return can add to a close.
pub const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// How long `Drop` lets the queue drain when the owner never called [`Auditor::close`]; with
/// [`CLOSE_GRACE`], the most dropping an auditor waits for its workers.
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
        // What scores, loaded first: a bad head or plugin must fail before any thread starts.
        let plan = head::load(&config)?;
        let width = plan.assembly().width();
        let capacity = config.queue.capacity;

        let ledger = Arc::new(Ledger::new(&config.cohort_names())?);
        let mut evidence = Evidence::new(&config)?;
        let admission = Arc::new(Admission::new(capacity, plan.byte_budget()));
        let identity = Identity {
            model_id: config.model.id.clone(),
            model_version: config.model.version.clone(),
            head_kind: plan.kind(),
            head_sha256: plan.sha256().to_string(),
        };
        let depth = Arc::clone(&admission);
        let metrics = Metrics::new(&config, &ledger, &mut evidence, &identity, move || depth.depth() as i64)?;
        let recorder = Recorder::new(&config, plan.assembly(), plan.kind(), plan.sha256())?;
        let delivery =
            Arc::new(Delivery::new(Arc::clone(&ledger), metrics, evidence, sink, config.threshold(), recorder));
        let scorers = (0..config.workers).map(|_| plan.spawn(&delivery)).collect::<Result<Vec<_>>>()?;
        // The evidence log's first snapshot, before any thread of ours starts: a key or a log
        // that cannot be used fails the creation.
        let evidence_log = match &config.evidence_log {
            Some(log) => {
                let (ledger, from) = (Arc::clone(&ledger), Arc::clone(&delivery));
                let cohorts = ledger.cohorts();
                let read: evidence_log::Reader =
                    Box::new(move || (ledger.stats(), (0..cohorts).map(|c| from.evidence.snapshot(c)).collect()));
                let names = config.cohort_names().into_iter().map(String::from).collect();
                let model = (config.model.id.clone(), config.model.version.clone());
                Some(EvidenceLog::start(log, model, plan.sha256(), names, read, Arc::clone(&delivery))?)
            }
            None => None,
        };

        let render: Render = {
            let (delivery, plan) = (Arc::clone(&delivery), Arc::clone(&plan));
            Arc::new(move || delivery.metrics.render() + &plan.render_metrics())
        };
        let http = match &config.metrics.http {
            Some(http) => Some(MetricsServer::start(http, Arc::clone(&render), delivery.metrics.http_health())?),
            None => None,
        };
        let http_addr = http.as_ref().map(MetricsServer::addr);
        // Recycled buffers hold at most what a few full batches need (for full maps, at most a
        // quarter of the copy budget), so bursts do not stay allocated.
        let batch_bytes = config.batching.max_batch * (width * 4 + 8);
        let pooled = plan.byte_budget().map_or(batch_bytes * 8, |budget| (budget / 4).min(batch_bytes * 8));
        let pool = Arc::new(Pool::new(config.workers * 4 + 64, pooled));
        let drain_deadline = Arc::new(OnceLock::new());
        let (tx, rx) = crossbeam_channel::bounded(capacity);

        let mut workers = Vec::with_capacity(config.workers);
        for (i, scorer) in scorers.into_iter().enumerate() {
            let ctx = WorkerContext {
                delivery: Arc::clone(&delivery),
                admission: Arc::clone(&admission),
                pool: Arc::clone(&pool),
                drain_deadline: Arc::clone(&drain_deadline),
                max_batch: config.batching.max_batch,
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

        let intake = Intake {
            taps: config.taps.clone(),
            assembly: plan.assembly().clone(),
            sampler: Sampler::new(config.sampling.one_in, config.sampling.salt),
            ledger,
            admission,
            pool,
            sender: ShardedLock::new(Some(tx)),
            closing: Default::default(),
            queue_capacity: capacity,
        };
        Ok(Auditor {
            config,
            plan,
            intake,
            delivery,
            workers: Mutex::new(workers),
            leftovers: rx,
            drain_deadline,
            close_report: Mutex::new(None),
            render,
            http: Mutex::new(http),
            http_addr,
            model: ServedModel::new(),
            evidence_log,
        })
    }

    /// The configuration the auditor runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Digest of the head file (Vanilla) or backend library (CNN) in use.
    pub fn head_sha256(&self) -> &str {
        self.plan.sha256()
    }

    /// The cohort named `name` (`default`, or one of the configuration's `cohorts`); look it
    /// up once and pass it to every [`Auditor::submit_in`].
    pub fn cohort(&self, name: &str) -> Result<Cohort> {
        let names = self.config.cohort_names();
        names.iter().position(|&n| n == name).and_then(Cohort::from_index).ok_or_else(|| {
            // Bounded whatever the caller passed and however many cohorts are declared.
            let shown: String = name.chars().take(crate::config::MAX_COHORT_NAME).collect();
            let cut = if shown.len() < name.len() { format!("... ({} bytes)", name.len()) } else { String::new() };
            let listed = names.iter().take(10).copied().collect::<Vec<_>>().join(", ");
            let more = if names.len() > 10 { format!(" and {} more", names.len() - 10) } else { String::new() };
            Error::InvalidInput(format!("no cohort is named '{shown}{cut}': the configuration declares {listed}{more}"))
        })
    }

    /// Hands over one batch of samples of the `default` cohort: their ids and one tensor per
    /// configured tap, in the configuration's order. Reads the chosen samples once (reducing
    /// maps to per-channel maxima, or copying the CNN tap), queues them without blocking, and
    /// returns.
    ///
    /// Errors say what was lost and why; each lost sample is also counted as dropped.
    /// [`Error::NonFinite`] means the other samples of the batch *were* accepted.
    pub fn submit(&self, ids: &[u64], taps: &[TensorView<'_>]) -> Result<SubmitReport> {
        self.submit_decoded(Cohort::DEFAULT, ids, Ok(taps))
    }

    /// [`Auditor::submit`] for samples of `cohort`: they are counted, and tested as evidence,
    /// in that cohort. A cohort this auditor does not declare loses the batch as invalid
    /// input (counted in `default`).
    pub fn submit_in(&self, cohort: Cohort, ids: &[u64], taps: &[TensorView<'_>]) -> Result<SubmitReport> {
        self.submit_decoded(cohort, ids, Ok(taps))
    }

    /// For bindings that turn foreign tensor descriptors into views: `taps` is the outcome of
    /// that decoding. A batch whose descriptors could not be read (`Err`) is counted like any
    /// malformed batch (its chosen samples submitted, then dropped as `invalid_input`) and
    /// its error returned, so that the loss shows in the metrics like any other.
    pub fn submit_decoded(&self, cohort: Cohort, ids: &[u64], taps: Result<&[TensorView<'_>]>) -> Result<SubmitReport> {
        let started = Instant::now();
        let outcome = self.intake.submit(cohort, ids, taps);
        self.delivery.metrics.observe_capture(started.elapsed().as_secs_f64());
        outcome
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
        self.infer_in(Cohort::DEFAULT, ids, inputs, outputs)
    }

    /// [`Auditor::infer`] for samples of `cohort`.
    pub fn infer_in(&self, cohort: Cohort, ids: &[u64], inputs: &[f32], outputs: &mut [f32]) -> Result<SubmitReport> {
        self.model.run(&self.config, inputs, ids.len(), |runner| {
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
            self.submit_in(cohort, ids, &views)
        })
    }

    /// The audited model run by [`Auditor::infer`], compiled on first use.
    pub fn audited_model(&self) -> Result<&TappedModel> {
        self.model.model(&self.config)
    }

    /// The metrics in Prometheus' text format (with a backend plugin's own, when it has some).
    pub fn render_metrics(&self) -> String {
        (self.render)()
    }

    /// Address of the built-in `/metrics` endpoint, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The endpoint's request path over in-memory connections, rendering this auditor's
    /// registry and counting in its health series, for the fuzz targets.
    #[cfg(fuzzing)]
    pub fn in_memory_endpoint(&self, http: &crate::config::HttpConfig) -> Result<crate::metrics::InMemoryEndpoint> {
        crate::metrics::InMemoryEndpoint::new(http, Arc::clone(&self.render), self.delivery.metrics.http_health())
    }

    /// The latest failure seen on a worker (head or backend), if any.
    pub fn last_worker_error(&self) -> Option<String> {
        self.delivery.last_error()
    }

    /// Counters since the auditor was created, all cohorts together.
    pub fn stats(&self) -> Stats {
        Stats { queue_depth: self.intake.admission.depth() as u64, ..self.intake.ledger.stats() }
    }

    /// Counters of one cohort since the auditor was created (`queue_depth` is the whole
    /// queue's). A cohort the auditor does not declare is an error.
    pub fn cohort_stats(&self, cohort: Cohort) -> Result<Stats> {
        self.check_cohort(cohort)?;
        let depth = self.intake.admission.depth() as u64;
        Ok(Stats { queue_depth: depth, ..self.intake.ledger.cohort_stats(cohort.index()) })
    }

    /// The membership evidence on one cohort now (docs/evidence.md says how to read it).
    pub fn evidence(&self, cohort: Cohort) -> Result<CohortEvidence> {
        self.check_cohort(cohort)?;
        Ok(self.delivery.evidence.snapshot(cohort.index()))
    }

    fn check_cohort(&self, cohort: Cohort) -> Result<()> {
        if cohort.index() < self.intake.ledger.cohorts() {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!("cohort {} is not declared", cohort.index())))
        }
    }

    /// Stops accepting samples, scores what is queued until `timeout` has passed, drops (as
    /// `shutdown`) whatever is left, and stops the workers. Later calls return the first report.
    /// The metrics stay readable (and the endpoint up) until the auditor is dropped.
    ///
    /// Returns within `timeout` plus [`CLOSE_GRACE`] whatever the sink or the backend does: a
    /// worker still inside one of them then is left to stop on its own
    /// ([`CloseReport::workers_busy`]), and the jobs queued behind it are dropped as `shutdown`
    /// without reaching the sink.
    ///
    /// Called from this auditor's own result sink (a worker thread, which closing waits for),
    /// it cannot wait: it only stops new samples and returns the counts so far, without
    /// caching them as the report. [`Auditor::try_close`] says so instead.
    pub fn close(&self, timeout: Duration) -> CloseReport {
        self.try_close(timeout).unwrap_or_else(|_| {
            self.intake.closing.store(true, std::sync::atomic::Ordering::Release);
            CloseReport { drained: 0, abandoned: 0, stats: self.stats(), workers_busy: 0, in_flight: 0 }
        })
    }

    /// [`Auditor::close`], refusing with [`Error::Reentrant`] when called from this auditor's
    /// own result sink.
    pub fn try_close(&self, timeout: Duration) -> Result<CloseReport> {
        if self.on_own_worker() {
            return Err(Error::Reentrant("close"));
        }
        Ok(self.close_waiting(timeout))
    }

    /// Whether the calling thread is one of this auditor's workers (its result sink runs there).
    pub fn on_own_worker(&self) -> bool {
        worker::is_worker_of(&self.delivery)
    }

    fn close_waiting(&self, timeout: Duration) -> CloseReport {
        let mut report = self.close_report.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(done) = *report {
            return done;
        }
        let before = self.intake.between_calls(|| self.stats());
        let deadline = Instant::now() + timeout;
        let _ = self.drain_deadline.set(deadline);
        // Closing the queue lets the workers drain it and then stop.
        self.intake.close();
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let all_stopped_by = |workers: &[JoinHandle<()>], until: Instant| loop {
            if workers.iter().all(JoinHandle::is_finished) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(CLOSE_POLL);
        };
        // At the deadline, a worker may still wait on a backend (back-pressure, retries against
        // a server that does not answer): cancelling it lets the worker drop what is left.
        if !all_stopped_by(&workers, deadline) {
            self.plan.cancel();
            all_stopped_by(&workers, Instant::now().max(deadline) + CLOSE_GRACE);
        }
        // A worker still busy now is inside the vendor's result sink (or a backend that ignores
        // cancel): waiting for it would make the deadline the callback's. It is left to stop
        // on its own; what it needs it holds by reference count (the sink's userdata included).
        let (stopped, busy): (Vec<_>, Vec<_>) = workers.drain(..).partition(JoinHandle::is_finished);
        for handle in stopped {
            let _ = handle.join();
        }
        drop(workers);
        if !busy.is_empty() {
            self.settle_queue();
        }
        // Submits still racing the close are refused as `closed`: each is counted whole or not
        // at all in this report, so `submitted = audited + dropped` holds in it.
        let stats = self.intake.between_calls(|| self.stats());
        let done = CloseReport {
            drained: stats.audited() - before.audited(),
            abandoned: stats.dropped(DropReason::Shutdown) - before.dropped(DropReason::Shutdown),
            stats,
            workers_busy: busy.len(),
            in_flight: stats.submitted.saturating_sub(stats.audited() + stats.dropped_total()),
        };
        // A recording is written once the workers are done with it (one still busy in the
        // sink has scored its batch already); a failure to write it is the vendor's to read.
        if let Some(recorder) = &self.delivery.recorder {
            if let Err(e) = recorder.write() {
                self.delivery.note_error(format!("writing the conformance recording: {e}"));
            }
        }
        // The log's last snapshot holds the final counts.
        if let Some(log) = &self.evidence_log {
            log.stop();
        }
        *report = Some(done);
        done
    }

    /// Drops (as `shutdown`) the jobs still queued behind a worker that did not stop in time.
    /// They are counted, not delivered: the sink is what holds that worker, and results reach
    /// it on worker threads only. A worker that returns meanwhile takes other jobs; each job is
    /// counted once, by whoever took it.
    fn settle_queue(&self) {
        for job in self.leftovers.try_iter() {
            self.delivery.ledger.dropped(usize::from(job.cohort), DropReason::Shutdown, job.ids.len());
            self.intake.admission.release(job.ids.len(), job.bytes());
        }
    }
}

impl Drop for Auditor {
    fn drop(&mut self) {
        self.close(DROP_DRAIN);
        self.http.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
