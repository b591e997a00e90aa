//! Background workers: batch queued records by size and wait time, hand them to the head
//! plan's [`Scorer`], and give the queue's room back.
//!
//! Every record that leaves the queue ends in exactly one call to [`Delivery::scored`] or
//! [`Delivery::dropped`] (by the scorer, or here at the drain deadline), so
//! `submitted = audited + dropped` holds once the auditor is closed.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::delivery::Delivery;
use crate::pipeline::{Admission, Job, Pool};
use crate::plan::Scorer;
use crate::results::DropReason;

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

thread_local! {
    /// The delivery this thread works for, when it is an auditor's worker (0 otherwise): a
    /// result sink runs here, and must not wait for its own thread to stop.
    static WORKING_FOR: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether the calling thread is one of the workers delivering to `delivery`.
pub(crate) fn is_worker_of(delivery: &Arc<Delivery>) -> bool {
    WORKING_FOR.with(|w| w.get()) == Arc::as_ptr(delivery) as usize
}

/// A worker's loop; returns when the queue is closed and drained.
pub(crate) fn run(rx: Receiver<Job>, ctx: WorkerContext, mut scorer: Box<dyn Scorer>) {
    WORKING_FOR.with(|w| w.set(Arc::as_ptr(&ctx.delivery) as usize));
    let mut jobs: Vec<Job> = Vec::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut cohorts: Vec<u16> = Vec::new();
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
        if ctx.past_deadline() {
            // Everything still queued ends in one delivery: a slow sink is called once, not
            // once per job, so closing with a short timeout stays short.
            jobs.extend(rx.try_iter());
            samples = jobs.iter().map(|j| j.ids.len()).sum();
            gather(&jobs, &mut ids, &mut cohorts, None);
            ctx.delivery.dropped(&ids, &cohorts, DropReason::Shutdown);
        } else if let [job] = jobs.as_slice() {
            cohorts.clear();
            cohorts.resize(job.ids.len(), job.cohort);
            if let Some(recorder) = &ctx.delivery.recorder {
                recorder.records(&job.ids, &job.records);
            }
            scorer.score(&job.ids, &cohorts, &job.records, &ctx.delivery);
        } else {
            gather(&jobs, &mut ids, &mut cohorts, Some(&mut records));
            debug_assert_eq!(records.len(), ids.len() * ctx.width);
            if let Some(recorder) = &ctx.delivery.recorder {
                recorder.records(&ids, &records);
            }
            scorer.score(&ids, &cohorts, &records, &ctx.delivery);
        }
        // Room is given back only once the records were scored (or copied by a backend).
        let bytes: usize = jobs.iter().map(Job::bytes).sum();
        ctx.admission.release(samples, bytes);
        for job in jobs.drain(..) {
            ctx.pool.give(job.ids, job.records);
        }
    }
    let deadline = ctx.drain_deadline.get().copied().unwrap_or_else(Instant::now);
    scorer.finish(deadline, &ctx.delivery);
}

/// Concatenates the jobs' ids, their cohorts (one per id) and, when asked, their records.
fn gather(jobs: &[Job], ids: &mut Vec<u64>, cohorts: &mut Vec<u16>, mut records: Option<&mut Vec<f32>>) {
    ids.clear();
    cohorts.clear();
    if let Some(r) = records.as_deref_mut() {
        r.clear();
    }
    for job in jobs {
        ids.extend_from_slice(&job.ids);
        cohorts.extend(std::iter::repeat_n(job.cohort, job.ids.len()));
        if let Some(r) = records.as_deref_mut() {
            r.extend_from_slice(&job.records);
        }
    }
}
