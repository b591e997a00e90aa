//! `mint-toolkit`: the auditor's toolkit as a library, which the `mint` CLI (`cli/`) and the
//! transparency console are clients of. What is here so far, bottom up:
//!
//! - [`descriptor`]: the audited model as the toolkit reads it (the `model` and `taps`
//!   sections of a configuration), compiled on tract or onnxruntime.
//! - [`extract`]: the audited model run over a data set, batch by batch on several threads;
//!   the records of every sample; NPY files.
//! - [`score`]: member and non-member sets scored through an auditor, as serving would.
//! - [`progress`]: progress bars, quiet when stderr is not a terminal; [`paths`]: paths
//!   written into files, relative where that reads better.
//! - [`data`]: the data an auditor brings (IDX, NPY and image folders; class labels), read
//!   within stated bounds.
//! - [`roc`]: ROC curves, AUC and TPR at a fixed FPR with bootstrap intervals, a seeded RNG.
//! - [`split`]: split files (which samples train and which evaluate a head, as members and
//!   non-members), read with errors that name the field, sources pinned by sha256.
//! - [`blind`]: the distribution-shift control, a classifier on the raw inputs alone.
//! - [`calibrate`]: the live threshold for a target false-positive rate, with exact and
//!   bootstrap intervals for the rates it gives.
//! - [`power`]: how many suspect samples a dataset test needs at the effect seen.
//! - [`report`]: ROC plots (SVG) and JUnit reports.
//! - [`conformance`]: the conformance kit's file, shared by `mint conformance write` and
//!   `check`.
//!
//! Still in the CLI, to move here next: what the commands do beyond these parts (train's
//! recipes, eval's figures and gates, the dataset test, conformance, the evidence study).

pub mod blind;
pub mod calibrate;
pub mod conformance;
pub mod data;
pub mod descriptor;
pub mod extract;
pub mod paths;
pub mod power;
pub mod progress;
pub mod report;
pub mod roc;
pub mod score;
pub mod split;
