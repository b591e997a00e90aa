//! mint-audit: live Membership Inference Tests (MINT) inside a model-serving stack.
//!
//! A vendor creates one [`Auditor`] from a [`Config`] and, on its serving threads, hands it the
//! activations of the configured tap layers ([`TensorView`]s) with the samples' ids. The path
//! of a sample, one module a hop:
//!
//! 1. `intake` (the vendor's thread): sampling, descriptor checks, admission to the queue;
//! 2. `capture` and `reduce`: each chosen map reduced in place to its per-channel max (the
//!    Vanilla MINT feature), or copied whole for a CNN head, into a compact record;
//! 3. `pipeline`: the bounded, non-blocking hand-off to the workers, with recycled buffers;
//! 4. `worker`: batching by size and wait time;
//! 5. `plan`: the head, built once and `spawn`ed per worker (`vanilla`: an ONNX model on
//!    tract; `backend`: a CNN head behind a plugin, on a CPU, a GPU or a Triton server);
//! 6. `delivery` and `ledger`: the verdict counted exactly once, the result handed to the
//!    vendor's [`ResultSink`], the metrics (`metrics`) read from the ledger.
//!
//! ```
//! use mint_audit::{Auditor, Config, Form, Layout, TensorView};
//!
//! # fn main() -> Result<(), mint_audit::Error> {
//! let config = Config::from_path("models/fmnist-memorizing/auditor.json")?;
//! let auditor = Auditor::new(config)?;
//!
//! // After the model ran on a batch of 2 requests: each tap's activations, in the
//! // configuration's order (maps [N, C, H, W], the outcome [N, 10]).
//! let shapes = [[2, 16, 28, 28], [2, 32, 14, 14], [2, 64, 7, 7], [2, 128, 4, 4]];
//! let maps: Vec<Vec<f32>> = shapes.iter().map(|s| vec![0.5; s.iter().product()]).collect();
//! let logits = vec![0.1f32; 2 * 10];
//! let mut taps: Vec<TensorView<'_>> = maps
//!     .iter()
//!     .zip(&shapes)
//!     .map(|(m, &s)| TensorView::map(m.as_slice(), Layout::Nchw, s))
//!     .collect::<Result<_, _>>()?;
//! taps.push(TensorView::vectors(logits.as_slice(), Form::Vector, 2, 10)?);
//!
//! let report = auditor.submit(&[1001, 1002], &taps)?;
//! assert_eq!(report.accepted, 2);
//!
//! let closed = auditor.close(std::time::Duration::from_secs(5));
//! assert_eq!(closed.stats.submitted, closed.stats.audited() + closed.stats.dropped_total());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod auditor;
mod backend;
mod capture;
mod cohort;
pub mod config;
mod conformance;
mod delivery;
mod error;
pub mod evidence;
pub mod evidence_log;
mod head;
mod identity;
mod intake;
mod ledger;
mod metrics;
mod model;
mod pipeline;
mod plan;
mod reduce;
mod results;
mod sampling;
mod tensor;
mod vanilla;
mod worker;

pub use auditor::{Auditor, CloseReport, CLOSE_GRACE};
pub use backend::link_backend;
pub use capture::FeatureExtractor;
pub use cohort::Cohort;
pub use config::Config;
pub use conformance::{Recording, RecordingHead, RecordingModel, RecordingPart, RecordingSample, RECORDING_FORMAT};
pub use error::{Error, ErrorKind, Result};
pub use evidence::CohortEvidence;
pub use identity::{reduce_isa, VERSION};
pub use intake::SubmitReport;
pub use ledger::Stats;
#[cfg(fuzzing)]
pub use metrics::InMemoryEndpoint;
pub use model::{Runtime, TappedModel, TappedRunner};
pub use results::{AuditResult, DropReason, Outcome, ResultSink, Verdict};
pub use tensor::{DType, Elements, Form, Layout, SeqLayout, TensorView, Tokens};

/// The reductions the auditor computes its features with, for hosts that compute them where
/// the data is: the Python hooks reduce a large activation map inside its forward hook, so that
/// the forward need not hold it, and the toolkit copies outcome vectors out of a batch. Each
/// runs the kernels this CPU was given at first use (AVX-512, AVX2 or the baseline), on any
/// layout and element type a [`TensorView`] describes.
pub mod reduction {
    pub use crate::reduce::{channel_max, channel_max_unchecked, copy_vector};
}

/// For this crate's benchmarks only (each kernel set by name, the start-up picks): no product
/// uses it, and it is not a stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::reduce::{
        channel_max, channel_max_isa, channel_max_unchecked, isa, pick_ratios, picks, pool, pool_isa, Isa,
    };
}
