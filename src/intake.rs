//! The vendor's side of the pipeline: what a submit call does on the calling thread, in order.
//!
//! 1. the ledger learns how many samples were handed over and how many sampling chose;
//! 2. the descriptors are checked against the taps (no data read), on every call;
//! 3. room is reserved on the queue (samples, and bytes for full maps), never blocking;
//! 4. the chosen samples are read once into records ([`capture::assemble`]);
//! 5. the records go to the workers with a non-blocking hand-off.
//!
//! Each sample lost on the way is reported to the ledger with its reason before the call
//! returns, so the vendor's error and the metrics always agree.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use crossbeam_utils::sync::ShardedLock;

use crate::capture::{self, Assembly};
use crate::cohort::Cohort;
use crate::config::TapConfig;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::pipeline::{Admission, Job, Pool};
use crate::results::DropReason;
use crate::sampling::Sampler;
use crate::tensor::TensorView;

/// What one submit call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubmitReport {
    /// Samples in the call.
    pub seen: usize,
    /// Samples chosen for audit by sampling.
    pub chosen: usize,
    /// Samples queued for the head.
    pub accepted: usize,
}

/// The submit path's state, shared by every serving thread.
pub(crate) struct Intake {
    pub taps: Vec<TapConfig>,
    pub assembly: Assembly,
    pub sampler: Sampler,
    pub ledger: Arc<Ledger>,
    pub admission: Arc<Admission>,
    pub pool: Arc<Pool>,
    pub sender: ShardedLock<Option<Sender<Job>>>,
    pub closing: AtomicBool,
    pub queue_capacity: usize,
}

impl Intake {
    /// Takes one batch of samples of `cohort`, or counts why it could not be taken. `taps` is
    /// `Err` when a binding could not even read the batch's descriptors: the chosen samples
    /// are then dropped as invalid input like any malformed batch; so are the samples of a
    /// cohort the auditor does not declare (counted in `default`).
    pub(crate) fn submit(&self, cohort: Cohort, ids: &[u64], taps: Result<&[TensorView<'_>]>) -> Result<SubmitReport> {
        thread_local! {
            static CHOSEN: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
        }
        // Held for the whole call: `close` takes the write side to see no call half-counted.
        let sender = self.sender.read().unwrap_or_else(|e| e.into_inner());
        CHOSEN.with_borrow_mut(|chosen| {
            chosen.clear();
            chosen.extend((0..ids.len()).filter(|&i| self.sampler.selects(ids[i])));
            let k = chosen.len();
            let mut report = SubmitReport { seen: ids.len(), chosen: k, accepted: 0 };
            let declared = cohort.index() < self.ledger.cohorts();
            let row = if declared { cohort.index() } else { Cohort::DEFAULT.index() };
            self.ledger.received(row, ids.len(), k);
            let lose = |reason: DropReason, n: usize, error: Error| {
                self.ledger.dropped(row, reason, n);
                Err(error)
            };
            if !declared {
                let error = Error::InvalidInput(format!(
                    "cohort {} is not declared: the configuration declares {} (default and \"cohorts\")",
                    cohort.index(),
                    self.ledger.cohorts()
                ));
                return lose(DropReason::InvalidInput, k, error);
            }
            if self.closing.load(Ordering::Acquire) {
                return lose(DropReason::Closed, k, Error::Closed);
            }
            // Shapes are checked even when sampling chose nothing, so that malformed input
            // is reported on every call, not one call in N.
            let taps =
                match taps.and_then(|t| capture::check_views(&self.taps, t, ids.len(), &self.assembly).map(|()| t)) {
                    Ok(taps) => taps,
                    Err(e) => return lose(DropReason::InvalidInput, k, e),
                };
            if k == 0 {
                return Ok(report);
            }
            let record_bytes = self.assembly.width() * std::mem::size_of::<f32>();
            if let Err(reason) = self.admission.reserve(k, k * record_bytes) {
                let error = match reason {
                    DropReason::OverBudget => Error::OverBudget {
                        samples: k,
                        bytes: k * record_bytes,
                        budget: self.admission.byte_cap().unwrap_or(usize::MAX),
                    },
                    _ => Error::QueueFull { samples: k, capacity: self.queue_capacity },
                };
                return lose(reason, k, error);
            }
            // Pooled buffers come back empty; `assemble` appends.
            let (mut job_ids, mut records) = self.pool.take();
            let rejected = capture::assemble(&self.assembly, taps, ids, chosen, &mut records, &mut job_ids);
            let accepted = job_ids.len();
            if let Some(r) = &rejected {
                self.admission.release(r.count, r.count * record_bytes);
                self.ledger.dropped(row, DropReason::NonFinite, r.count);
            }
            if accepted > 0 {
                let job = Job { ids: job_ids, cohort: row as u16, records, enqueued: Instant::now() };
                if let Err((job, reason)) = hand_off(sender.as_ref(), job) {
                    self.admission.release(accepted, job.bytes());
                    self.pool.give(job.ids, job.records);
                    let error = match reason {
                        DropReason::Closed => Error::Closed,
                        _ => Error::QueueFull { samples: accepted, capacity: self.queue_capacity },
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
                    tap: self.taps[r.tap].name.clone(),
                }),
                None => Ok(report),
            }
        })
    }

    /// Refuses new samples and closes the queue; the write lock waits for submits that are
    /// running right now.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.sender.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Runs `f` while no submit call is under way, so that what it reads of the ledger counts
    /// every sample of every call in full or not at all. Submits wait only for `f`.
    pub(crate) fn between_calls<T>(&self, f: impl FnOnce() -> T) -> T {
        let _no_submit = self.sender.write().unwrap_or_else(|e| e.into_inner());
        f()
    }
}

/// Queues a job without blocking; gives it back with the reason when it cannot go.
fn hand_off(sender: Option<&Sender<Job>>, job: Job) -> std::result::Result<(), (Job, DropReason)> {
    match sender {
        Some(tx) => tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) => (job, DropReason::QueueFull),
            TrySendError::Disconnected(job) => (job, DropReason::Closed),
        }),
        None => Err((job, DropReason::Closed)),
    }
}
