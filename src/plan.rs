//! The head plan: what the auditor builds once for its MINT head (tract's
//! `SimplePlan::spawn() → SimpleState` is the model). The kinds of head implement it below
//! (`vanilla`, `backend`); `head` picks one from the configuration, above them.
//!
//! A plan says what a record looks like ([`Assembly`]), what records may cost in bytes at
//! once, how the head is identified, and [`HeadPlan::spawn`]s one [`Scorer`] per worker.

use std::sync::Arc;
use std::time::Instant;

use crate::capture::Assembly;
use crate::delivery::Delivery;
use crate::error::Result;

/// A compiled head, shared by the auditor and its workers.
pub(crate) trait HeadPlan: Send + Sync {
    /// `vanilla` or `cnn`, for the `_info` metric.
    fn kind(&self) -> &'static str;

    /// The digest that identifies the head.
    fn sha256(&self) -> &str;

    /// How a sample's taps become its record.
    fn assembly(&self) -> &Assembly;

    /// Bytes that records may hold at once while they wait for the workers; `None` when
    /// records are small enough that the queue's sample bound suffices.
    fn byte_budget(&self) -> Option<usize>;

    /// A scorer for one more worker thread; its results and failures reach `delivery`.
    fn spawn(&self, delivery: &Arc<Delivery>) -> Result<Box<dyn Scorer>>;

    /// The close deadline has passed: stop waiting on whatever scores remotely (a backend's
    /// back-pressure and retries), so that the workers can drop what is left and stop.
    fn cancel(&self) {}

    /// The head's own metrics in the Prometheus text format (a backend plugin's), or "".
    fn render_metrics(&self) -> String {
        String::new()
    }
}

/// One worker's state: turns batches of records into scores.
pub(crate) trait Scorer: Send {
    /// Scores `ids.len()` records of `records` (of samples of `cohorts`, one per id); every
    /// id reaches `delivery` with its cohort, now or later.
    fn score(&mut self, ids: &[u64], cohorts: &[u16], records: &[f32], delivery: &Delivery);

    /// Called once the queue is closed and drained; waits for late results until `deadline`.
    fn finish(&mut self, _deadline: Instant, _delivery: &Delivery) {}
}
