//! `mint-toolkit`: the auditor's toolkit as a library. The `mint` CLI (`cli/`) and the
//! transparency console (`mint serve`) are thin clients of it: they parse arguments, print and
//! serve HTTP; everything they compute is here. Bottom up:
//!
//! Parts:
//! - [`progress`]: progress bars, quiet when stderr is not a terminal; [`paths`]: paths
//!   written into files, relative where that reads better.
//! - [`data`]: the data an auditor brings (IDX, NPY and image folders; class labels), read
//!   within stated bounds.
//! - [`roc`]: ROC curves, AUC and TPR at a fixed FPR with bootstrap intervals, a seeded RNG.
//! - [`descriptor`]: the audited model as the toolkit reads it (the `model` and `taps`
//!   sections of a configuration), compiled on tract or onnxruntime.
//! - [`extract`]: the audited model run over a data set, batch by batch on several threads;
//!   the records of every sample; NPY files.
//! - [`score`]: member and non-member sets scored through an auditor, as serving would.
//! - [`split`]: split files (which samples train and which evaluate a head, as members and
//!   non-members), made balanced and seeded, read with errors that name the field, sources
//!   pinned by sha256.
//! - [`logistic`]: L2-regularised logistic regression, for the two parts that learn a line.
//! - [`blind`]: the distribution-shift control, a classifier on the raw inputs alone;
//!   [`baselines`]: the outcome's confidence and loss, scores that need no head.
//! - [`calibrate`]: the live threshold for a target false-positive rate, with exact and
//!   bootstrap intervals for the rates it gives.
//! - [`power`]: how many suspect samples a dataset test needs at the effect seen.
//! - [`report`]: ROC plots (SVG) and JUnit reports.
//! - [`attest`]: signed, chained evidence (in-toto statements in DSSE envelopes, ed25519).
//! - [`formats`]: one type per file format (features sidecar, training report, eval and
//!   dataset-test reports, evidence bundle), each with its JSON schema in docs/schemas/.
//!
//! What the commands do:
//! - [`inspect`]: which tensors of an ONNX model can be tapped, and which to pick.
//! - [`train`]: a head trained by the shipped PyTorch recipes, checked in our runtime, and the
//!   auditor configuration that serves it.
//! - [`eval`]: a head's figures beside the baselines and the shift control, gates, calibration.
//! - [`dataset_test`]: was a suspect set in the training set, against known non-members.
//! - [`dataset_inference`]: the same question for an owner's texts from per-text features,
//!   combined by a linear model learnt on one half (Maini et al. 2024), with its power study.
//! - [`conformance`]: the conformance kit a vendor's CI checks its integration with.
//! - [`evidence_study`]: the validation of the evidence tests, regenerating docs/evidence.md;
//!   [`anytime_study`]: that of the anytime-valid evidence, by simulation from the pools.
//! - [`console`]: the transparency console's registry, upload decoding and analysis.
//! - [`fleet`]: a fleet's evidence from its replicas' series, read through the Prometheus API.

pub mod anytime_study;
/// Signed, chained evidence: the `mint-attest` crate.
pub use mint_attest as attest;
pub mod baselines;
pub mod blind;
pub mod calibrate;
pub mod conformance;
pub mod console;
pub mod data;
pub mod dataset_inference;
pub mod dataset_test;
pub mod descriptor;
pub mod eval;
pub mod evidence_study;
pub mod extract;
pub mod fleet;
pub mod formats;
pub mod inspect;
pub mod logistic;
pub mod paths;
pub mod power;
pub mod progress;
pub mod report;
pub mod roc;
pub mod score;
pub mod split;
pub mod train;
