//! mint-audit: live Membership Inference Tests (MINT) inside a model-serving stack.
//!
//! A vendor creates one [`Auditor`] from a [`Config`] and, on its serving threads, hands it the
//! activations of the configured tap layers ([`TensorView`]s) with the samples' ids. The
//! auditor reduces each map to its per-channel max on the calling thread (the Vanilla MINT
//! feature), queues the compact records without blocking, and scores them on background
//! workers with the auditor's MINT head (an ONNX model run by tract, or a backend plugin for
//! CNN heads). Results reach the vendor's [`ResultSink`] and Prometheus metrics.

mod auditor;
mod backend;
mod capture;
pub mod config;
pub mod error;
pub mod head;
pub mod metrics;
pub mod model;
mod pipeline;
pub mod reduce;
mod results;
mod sampling;
pub mod tensor;
mod worker;

pub use auditor::{Auditor, CloseReport, Stats, SubmitReport};
pub use capture::FeatureExtractor;
pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use metrics::{DropReason, Verdict};
pub use model::{TappedModel, TappedRunner};
pub use results::{AuditResult, Outcome, ResultSink};
pub use sampling::Sampler;
pub use tensor::{DType, Elements, Form, Layout, TensorView};

/// The library's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
