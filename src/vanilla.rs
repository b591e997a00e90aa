//! The Vanilla MINT head: per-channel maxima (and outcome vectors) of the taps, concatenated,
//! scored in-process by an ONNX model on tract, one state per worker.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mint_head::{HeadModel, HeadRunner, ScoreOutput};

use crate::capture::Assembly;
use crate::delivery::Delivery;
use crate::error::Result;
use crate::plan::{HeadPlan, Scorer};
use crate::results::DropReason;

/// The compiled head: a symbolic-batch plan and plans for batches of 1 and `max_batch`.
pub(crate) struct VanillaPlan {
    head: HeadModel,
    assembly: Assembly,
    max_batch: usize,
}

impl VanillaPlan {
    pub(crate) fn load(
        path: &Path,
        sha256: &str,
        output: ScoreOutput,
        assembly: Assembly,
        max_batch: usize,
    ) -> Result<VanillaPlan> {
        let head =
            HeadModel::load(path, Some(sha256), &[assembly.width()], output)?.with_batch_plans(&[1, max_batch])?;
        Ok(VanillaPlan { head, assembly, max_batch })
    }
}

impl HeadPlan for VanillaPlan {
    fn kind(&self) -> &'static str {
        "vanilla"
    }

    fn sha256(&self) -> &str {
        self.head.sha256()
    }

    fn assembly(&self) -> &Assembly {
        &self.assembly
    }

    fn byte_budget(&self) -> Option<usize> {
        None
    }

    fn spawn(&self, _delivery: &Arc<Delivery>) -> Result<Box<dyn Scorer>> {
        let width = self.assembly.width();
        Ok(Box::new(HeadScorer {
            runner: self.head.runner()?,
            max_batch: self.max_batch,
            width,
            scores: Vec::with_capacity(self.max_batch),
        }))
    }
}

/// One worker's state of the head.
struct HeadScorer {
    runner: HeadRunner,
    max_batch: usize,
    width: usize,
    scores: Vec<f32>,
}

impl Scorer for HeadScorer {
    fn score(&mut self, ids: &[u64], cohorts: &[u16], records: &[f32], delivery: &Delivery) {
        let chunks = ids.chunks(self.max_batch).zip(cohorts.chunks(self.max_batch));
        for ((ids, cohorts), records) in chunks.zip(records.chunks(self.max_batch * self.width)) {
            self.scores.clear();
            let started = Instant::now();
            // A panic in the runtime loses this batch (counted as head errors), not the worker.
            let scores = &mut self.scores;
            let runner = &mut self.runner;
            let outcome = mint_backend_abi::boundary::catch(|| runner.score(records, ids.len(), scores));
            delivery.metrics.observe_head_batch(started.elapsed().as_secs_f64(), ids.len());
            match outcome {
                Ok(Ok(())) => delivery.scored(ids, cohorts, &self.scores, DropReason::HeadError),
                Ok(Err(e)) => {
                    delivery.note_error(e.to_string());
                    delivery.dropped(ids, cohorts, DropReason::HeadError);
                }
                Err(what) => {
                    delivery.note_error(format!("the head panicked: {what}"));
                    delivery.dropped(ids, cohorts, DropReason::HeadError);
                }
            }
        }
    }
}
