//! `mint dataset-test`: was a suspect dataset in the training set? ([`mint_toolkit::dataset_test`]
//! says how it is tested.)
//!
//! Exit codes: 0 when the expectation (`--expect`) holds or none is given, 1 when it does not
//! or a control fails, 2 on error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use mint_toolkit::dataset_test::{self, Options, Sets};

use crate::expect::Expect;

#[derive(clap::Args)]
/// Test whether a suspect dataset was in the training set, against a reference of known non-members.
pub struct Args {
    /// The auditor configuration (with `model.onnx`, `model.input_shape` and tap `tensor`s).
    #[arg(long)]
    config: PathBuf,
    /// The suspect samples: IDX file, NPY array or folder of images.
    #[arg(long, requires = "reference", conflicts_with = "split")]
    suspect: Option<PathBuf>,
    /// Known non-members from the suspect set's distribution, likewise.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// A split file: its --protocol's eval members are the suspect set, its eval non-members the reference.
    #[arg(long, requires = "protocol")]
    split: Option<PathBuf>,
    #[arg(long)]
    protocol: Option<String>,
    /// Use at most this many suspect samples.
    #[arg(long)]
    suspect_limit: Option<usize>,
    /// Use at most this many reference samples.
    #[arg(long)]
    reference_limit: Option<usize>,
    /// Significance level of the decision (the rank test's p-value below it is evidence).
    #[arg(long, default_value_t = 0.01)]
    alpha: f64,
    /// Fail (exit 1) unless the outcome is this.
    #[arg(long, value_enum)]
    expect: Option<Expect>,
    /// Blind-baseline AUC from which the sets are taken to differ in distribution.
    #[arg(long, default_value_t = 0.6)]
    shift_auc: f64,
    /// Report a distribution shift as a warning instead of failing the run.
    #[arg(long)]
    allow_shift: bool,
    /// Folder for report.json and junit.xml.
    #[arg(long)]
    out_dir: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let sets = match (args.split, args.protocol, args.suspect, args.reference) {
        (Some(path), Some(protocol), None, None) => Sets::Split { path, protocol },
        (None, None, Some(suspect), Some(reference)) => Sets::Files { suspect, reference },
        _ => bail!("give --suspect and --reference, or --split and --protocol"),
    };
    let outcome = dataset_test::run(&Options {
        config: args.config,
        sets,
        suspect_limit: args.suspect_limit,
        reference_limit: args.reference_limit,
        alpha: args.alpha,
        expect: args.expect.map(Into::into),
        shift_auc: args.shift_auc,
        allow_shift: args.allow_shift,
        seed: args.seed,
        threads: args.threads,
        batch: args.batch,
    })?;
    outcome.write(&args.out_dir)?;
    println!("{}", outcome.summary);
    for c in &outcome.report.checks {
        println!("  [{}] {}", if c.passed { "pass" } else { "FAIL" }, c.name);
    }
    println!("reports in {}", args.out_dir.display());
    Ok(if outcome.report.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
