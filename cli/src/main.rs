//! `mint`: the auditor's toolkit around the mint-audit library.
//!
//! - `mint inspect`  lists the tensors of an audited ONNX model that can be tapped.
//! - `mint extract`  runs the audited model over a data set and writes the MINT features (NPY).
//! - `mint train`    trains a MINT head on extracted features (driving a shipped PyTorch recipe).
//! - `mint eval`     scores member and non-member sets through the library's own runtime and
//!   writes accuracy, ROC AUC, TPR at low FPR (bootstrap intervals), a ROC plot, JSON and JUnit
//!   reports, with a distribution-shift control; exits non-zero when a threshold is missed;
//!   `--calibrate FPR` chooses the live threshold and writes it into the configuration.
//! - `mint dataset-test` tests whether a suspect dataset was in the training set, against a
//!   reference of known non-members: p-values, effect size, member fraction, a power table.
//! - `mint dataset-inference` asks the same of an owner's texts from per-text feature tables
//!   (Maini et al. 2024: features combined on one half, a t-test on the other), with a power
//!   study and its null control.
//! - `mint split` makes a balanced, seeded, hash-pinned split file from member and non-member sources.
//! - `mint conformance write|check` golden vectors for a vendor's CI, and the check of what its
//!   integration recorded (the tap, channel and sample that differ, and the likely cause).
//! - `mint serve`     serves the transparency console: a data owner uploads images and learns
//!   whether the audited models trained on them, with an evidence bundle to file;
//!   `mint verify-bundle` checks a bundle's signature and recomputes it from the same images.
//! - `mint keygen` makes an operator's signing key; `mint verify` checks any signed file of
//!   ours (bundle, signed fleet report, a log of them) against the key the verifier trusts.
//! - `mint evidence-study` validates those tests on calibrated models and writes docs/evidence.md's tables.

mod conformance;
mod console;
mod dataset_inference;
mod dataset_test;
mod eval;
mod evidence;
mod evidence_study;
mod expect;
mod extract;
mod inspect;
mod keygen;
mod split;
mod train;
mod verify;

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mint_audit::config::ModelRuntime;

#[derive(Parser)]
#[command(name = "mint", version, about = "Membership Inference Test (MINT) toolkit for mint-audit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// The runtime asked for on the command line, over every model's `model.runtime`.
#[derive(Debug, Default, clap::Args)]
struct RuntimeArgs {
    /// What runs the audited model's forward pass: tract (built in) or onnxruntime; by
    /// default the configuration's `model.runtime` (tract when absent).
    #[arg(long, global = true, value_parser = str::parse::<ModelRuntime>)]
    runtime: Option<ModelRuntime>,
    /// onnxruntime's shared library (libonnxruntime.so.1.x, 1.24 or newer) for
    /// `--runtime onnxruntime`; by default `model.onnxruntime_library`, then $ORT_DYLIB_PATH.
    #[arg(long, global = true)]
    onnxruntime_library: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    Inspect(inspect::Args),
    Extract(extract::Args),
    Train(train::Args),
    Eval(eval::Args),
    DatasetTest(dataset_test::Args),
    DatasetInference(dataset_inference::Args),
    Evidence(evidence::Args),
    EvidenceStudy(evidence_study::Args),
    Split(split::Args),
    Serve(console::Args),
    Conformance(conformance::Args),
    VerifyBundle(console::bundle::Args),
    Verify(verify::Args),
    Keygen(keygen::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    mint_toolkit::descriptor::choose_runtime(mint_toolkit::descriptor::RuntimeChoice {
        runtime: cli.runtime.runtime,
        onnxruntime_library: cli.runtime.onnxruntime_library,
    });
    let outcome = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Extract(args) => extract::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::DatasetTest(args) => dataset_test::run(args),
        Command::DatasetInference(args) => dataset_inference::run(args),
        Command::Evidence(args) => evidence::run(args),
        Command::EvidenceStudy(args) => evidence_study::run(args),
        Command::Split(args) => split::run(args),
        Command::Serve(args) => console::run(args),
        Command::Conformance(args) => conformance::run(args),
        Command::VerifyBundle(args) => console::bundle::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Keygen(args) => keygen::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mint: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
