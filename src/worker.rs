//! Background workers: batch queued records by size and wait time, score them, deliver results.
//!
//! The scoring step is a [`Scorer`]: the in-process Vanilla head here, or a backend plugin for
//! CNN heads. Either way every record that leaves the queue ends in exactly one call to
//! [`Delivery::scored`] or [`Delivery::dropped`], which keep the metrics and feed the vendor's
//! result sink, so `submitted = audited + dropped` holds once the auditor is closed.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::head::HeadRunner;
use crate::metrics::{DropReason, Metrics, Verdict};
use crate::pipeline::{Admission, Job, Pool};
use crate::results::{AuditResult, Outcome, ResultSink};

/// Turns batches of records into scores.
pub(crate) trait Scorer: Send {
    /// Scores `ids.len()` records of `records`; every id reaches `delivery`, now or later.
    fn score(&mut self, ids: &[u64], records: &[f32], delivery: &Delivery);

    /// Called once the queue is closed and drained; waits for late results until `deadline`.
    fn finish(&mut self, _deadline: Instant, _delivery: &Delivery) {}
}

/// Where results go: metrics always, the vendor's sink when one is registered.
pub(crate) struct Delivery {
    pub metrics: Metrics,
    sink: Option<Arc<dyn ResultSink>>,
    threshold: f32,
    last_error: Mutex<Option<String>>,
}

impl Delivery {
    pub(crate) fn new(metrics: Metrics, sink: Option<Arc<dyn ResultSink>>, threshold: f32) -> Delivery {
        Delivery { metrics, sink, threshold, last_error: Mutex::new(None) }
    }

    /// Records scores; a non-finite score counts as a head error for that sample.
    pub(crate) fn scored(&self, ids: &[u64], scores: &[f32]) {
        debug_assert_eq!(ids.len(), scores.len());
        let mut results = Vec::with_capacity(ids.len());
        let (mut members, mut non_members, mut broken) = (0, 0, 0);
        for (&sample_id, &score) in ids.iter().zip(scores) {
            let outcome = if !score.is_finite() {
                broken += 1;
                Outcome::Dropped(DropReason::HeadError)
            } else if score >= self.threshold {
                members += 1;
                self.metrics.score.observe(score as f64);
                Outcome::Audited(Verdict::Member)
            } else {
                non_members += 1;
                self.metrics.score.observe(score as f64);
                Outcome::Audited(Verdict::NonMember)
            };
            results.push(AuditResult { sample_id, score, outcome });
        }
        self.metrics.audited(Verdict::Member).inc_by(members);
        self.metrics.audited(Verdict::NonMember).inc_by(non_members);
        if broken > 0 {
            self.metrics.dropped(DropReason::HeadError).inc_by(broken);
            self.note_error(format!("the head gave {broken} non-finite scores"));
        }
        if let Some(sink) = &self.sink {
            sink.deliver(&results);
        }
    }

    /// Records samples lost after the submit call returned.
    pub(crate) fn dropped(&self, ids: &[u64], reason: DropReason) {
        self.metrics.dropped(reason).inc_by(ids.len() as u64);
        if let Some(sink) = &self.sink {
            let results: Vec<AuditResult> = ids
                .iter()
                .map(|&sample_id| AuditResult { sample_id, score: f32::NAN, outcome: Outcome::Dropped(reason) })
                .collect();
            sink.deliver(&results);
        }
    }

    /// Keeps the latest asynchronous failure, for the vendor to read.
    pub(crate) fn note_error(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Scores records with an in-process ONNX head.
pub(crate) struct HeadScorer {
    runner: HeadRunner,
    max_batch: usize,
    width: usize,
    scores: Vec<f32>,
}

impl HeadScorer {
    pub(crate) fn new(runner: HeadRunner, max_batch: usize, width: usize) -> HeadScorer {
        HeadScorer { runner, max_batch, width, scores: Vec::with_capacity(max_batch) }
    }
}

impl Scorer for HeadScorer {
    fn score(&mut self, ids: &[u64], records: &[f32], delivery: &Delivery) {
        for (ids, records) in ids.chunks(self.max_batch).zip(records.chunks(self.max_batch * self.width)) {
            self.scores.clear();
            let started = Instant::now();
            let outcome = self.runner.score(records, ids.len(), &mut self.scores);
            delivery.metrics.head_batch_seconds.observe(started.elapsed().as_secs_f64());
            delivery.metrics.head_batch_size.observe(ids.len() as f64);
            match outcome {
                Ok(()) => delivery.scored(ids, &self.scores),
                Err(e) => {
                    delivery.note_error(e.to_string());
                    delivery.dropped(ids, DropReason::HeadError);
                }
            }
        }
    }
}

/// What a worker shares with the auditor.
pub(crate) struct WorkerContext {
    pub delivery: Arc<Delivery>,
    pub admission: Arc<Admission>,
    pub pool: Arc<Pool>,
    pub drain_deadline: Arc<OnceLock<Instant>>,
    pub max_batch: usize,
    pub max_wait: Duration,
    pub width: usize,
}

impl WorkerContext {
    fn past_deadline(&self) -> bool {
        self.drain_deadline.get().is_some_and(|d| Instant::now() >= *d)
    }
}

/// A worker's loop; returns when the queue is closed and drained.
pub(crate) fn run(rx: Receiver<Job>, ctx: WorkerContext, mut scorer: Box<dyn Scorer>) {
    let mut jobs: Vec<Job> = Vec::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut records: Vec<f32> = Vec::new();
    while let Ok(first) = rx.recv() {
        // Wait for the batch to fill, but never longer than the oldest record's allowance.
        let wait_until = first.enqueued + ctx.max_wait;
        let mut samples = first.ids.len();
        jobs.push(first);
        while samples < ctx.max_batch {
            match rx.recv_deadline(wait_until) {
                Ok(job) => {
                    samples += job.ids.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let bytes: usize = jobs.iter().map(Job::bytes).sum();
        if ctx.past_deadline() {
            for job in &jobs {
                ctx.delivery.dropped(&job.ids, DropReason::Shutdown);
            }
        } else if let [job] = jobs.as_slice() {
            scorer.score(&job.ids, &job.records, &ctx.delivery);
        } else {
            ids.clear();
            records.clear();
            for job in &jobs {
                ids.extend_from_slice(&job.ids);
                records.extend_from_slice(&job.records);
            }
            debug_assert_eq!(records.len(), ids.len() * ctx.width);
            scorer.score(&ids, &records, &ctx.delivery);
        }
        // Room is given back only once the records were scored (or copied by a backend).
        ctx.admission.release(samples, bytes);
        for job in jobs.drain(..) {
            ctx.pool.give(job.ids, job.records);
        }
    }
    let deadline = ctx.drain_deadline.get().copied().unwrap_or_else(Instant::now);
    scorer.finish(deadline, &ctx.delivery);
}
