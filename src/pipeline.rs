//! The hand-off between the vendor's threads and the workers: admission control in samples
//! (and bytes, for full maps), jobs, and a pool of recycled buffers so that the steady state
//! allocates nothing on the vendor's thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;

use crate::results::DropReason;

/// Records of one submit call, on their way to a worker.
pub(crate) struct Job {
    pub ids: Vec<u64>,
    /// The cohort of every sample of the call.
    pub cohort: u16,
    /// `ids.len()` records of the assembly's width, back to back.
    pub records: Vec<f32>,
    pub enqueued: Instant,
}

impl Job {
    pub(crate) fn bytes(&self) -> usize {
        self.records.len() * std::mem::size_of::<f32>()
    }
}

/// Bounds on what may wait for the workers: samples always, bytes for the CNN path.
pub(crate) struct Admission {
    samples: AtomicUsize,
    sample_cap: usize,
    bytes: AtomicUsize,
    /// `None`: bytes are not bounded (Vanilla records are a few hundred floats).
    byte_cap: Option<usize>,
}

impl Admission {
    pub(crate) fn new(sample_cap: usize, byte_cap: Option<usize>) -> Admission {
        Admission { samples: AtomicUsize::new(0), sample_cap, bytes: AtomicUsize::new(0), byte_cap }
    }

    /// Takes room for `samples` samples of `bytes` bytes, or says why there is none.
    /// Never blocks: a full queue is the vendor's signal to move on.
    pub(crate) fn reserve(&self, samples: usize, bytes: usize) -> Result<(), DropReason> {
        let before = self.samples.fetch_add(samples, Ordering::AcqRel);
        if before + samples > self.sample_cap {
            self.samples.fetch_sub(samples, Ordering::AcqRel);
            return Err(DropReason::QueueFull);
        }
        if let Some(cap) = self.byte_cap {
            let before = self.bytes.fetch_add(bytes, Ordering::AcqRel);
            if before + bytes > cap {
                self.bytes.fetch_sub(bytes, Ordering::AcqRel);
                self.samples.fetch_sub(samples, Ordering::AcqRel);
                return Err(DropReason::OverBudget);
            }
        }
        Ok(())
    }

    pub(crate) fn release(&self, samples: usize, bytes: usize) {
        self.samples.fetch_sub(samples, Ordering::AcqRel);
        if self.byte_cap.is_some() {
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    /// The bound on bytes, when there is one.
    pub(crate) fn byte_cap(&self) -> Option<usize> {
        self.byte_cap
    }

    /// Samples waiting now.
    pub(crate) fn depth(&self) -> usize {
        self.samples.load(Ordering::Acquire)
    }
}

/// Recycled id and record buffers, holding at most `max_bytes` of capacity in all: a burst of
/// large batches must not stay allocated in the vendor's process once it has passed.
pub(crate) struct Pool {
    free: ArrayQueue<(Vec<u64>, Vec<f32>)>,
    pooled_bytes: AtomicUsize,
    max_bytes: usize,
}

/// Capacity in bytes of a pair of buffers.
fn capacity_bytes(ids: &Vec<u64>, records: &Vec<f32>) -> usize {
    ids.capacity() * std::mem::size_of::<u64>() + records.capacity() * std::mem::size_of::<f32>()
}

impl Pool {
    pub(crate) fn new(slots: usize, max_bytes: usize) -> Pool {
        Pool { free: ArrayQueue::new(slots.max(1)), pooled_bytes: AtomicUsize::new(0), max_bytes }
    }

    pub(crate) fn take(&self) -> (Vec<u64>, Vec<f32>) {
        match self.free.pop() {
            Some((ids, records)) => {
                self.pooled_bytes.fetch_sub(capacity_bytes(&ids, &records), Ordering::AcqRel);
                (ids, records)
            }
            None => Default::default(),
        }
    }

    pub(crate) fn give(&self, mut ids: Vec<u64>, mut records: Vec<f32>) {
        ids.clear();
        records.clear();
        let bytes = capacity_bytes(&ids, &records);
        // Over the bound, the buffers are freed instead of kept.
        if self.pooled_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes > self.max_bytes {
            self.pooled_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return;
        }
        // A full pool means more buffers exist than were ever in flight at once: let it go.
        if self.free.push((ids, records)).is_err() {
            self.pooled_bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    /// Bytes of capacity held now.
    #[cfg(test)]
    pub(crate) fn pooled_bytes(&self) -> usize {
        self.pooled_bytes.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_keeps_no_more_than_its_bound() {
        let pool = Pool::new(8, 1 << 20);
        for _ in 0..8 {
            pool.give(Vec::with_capacity(16), Vec::with_capacity(1 << 20)); // 4 MiB each: freed
        }
        assert_eq!(pool.pooled_bytes(), 0);
        pool.give(Vec::with_capacity(16), Vec::with_capacity(1024));
        assert_eq!(pool.pooled_bytes(), 16 * 8 + 1024 * 4);
        let (ids, records) = pool.take();
        assert!(ids.capacity() >= 16 && records.capacity() >= 1024);
        assert_eq!(pool.pooled_bytes(), 0);
    }

    #[test]
    fn admission_counts_samples_and_bytes() {
        let a = Admission::new(10, Some(100));
        assert_eq!(a.reserve(6, 60), Ok(()));
        assert_eq!(a.reserve(5, 10), Err(DropReason::QueueFull));
        assert_eq!(a.reserve(2, 50), Err(DropReason::OverBudget));
        assert_eq!(a.depth(), 6);
        assert_eq!(a.reserve(4, 40), Ok(()));
        a.release(10, 100);
        assert_eq!(a.depth(), 0);
        assert_eq!(a.reserve(10, 0), Ok(()));
        let unbounded = Admission::new(4, None);
        assert_eq!(unbounded.reserve(4, usize::MAX), Ok(()));
        unbounded.release(4, usize::MAX);
        assert_eq!(unbounded.depth(), 0);
    }
}
