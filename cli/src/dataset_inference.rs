//! `mint dataset-inference`: were an owner's texts trained on? Per-text features of a suspect
//! and a validation set combined by a linear model learnt on one half and tested on the other
//! ([`mint_toolkit::dataset_inference`] says how, and what it assumes).
//!
//! Exit codes: 0 when the expectation (`--expect`) and the null control hold or none is asked,
//! 1 when one does not, 2 on error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use mint_toolkit::dataset_inference::{self, Options, StudyOptions};

use crate::expect::Expect;

#[derive(clap::Args)]
/// Dataset inference (Maini et al. 2024) on per-text feature tables (JSON Lines, docs/formats.md).
pub struct Args {
    /// The suspect texts' features.
    #[arg(long)]
    suspect: PathBuf,
    /// Features of known non-members of the same distribution (never trained on).
    #[arg(long)]
    validation: PathBuf,
    /// The features to combine, comma-separated (default: all of the suspect table's).
    #[arg(long, value_delimiter = ',')]
    features: Option<Vec<String>>,
    /// A feature in [0, 1] (a MINT head's score) for the rank test beside dataset inference.
    #[arg(long)]
    rank_feature: Option<String>,
    /// Significance level of the decision.
    #[arg(long, default_value_t = 0.01)]
    alpha: f64,
    /// Fail (exit 1) unless the outcome is this.
    #[arg(long, value_enum)]
    expect: Option<Expect>,
    /// The power study: known members' features; suspect sets of members of each size are
    /// tested against validation texts, and pairs of validation sets make the null control.
    #[arg(long, requires = "sizes")]
    members: Option<PathBuf>,
    /// Study sizes (texts per set), comma-separated.
    #[arg(long, value_delimiter = ',', requires = "members")]
    sizes: Option<Vec<usize>>,
    /// Draws per study size.
    #[arg(long, default_value_t = 200)]
    draws: usize,
    /// Folder for report.json and junit.xml.
    #[arg(long)]
    out_dir: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let outcome = dataset_inference::run(&Options {
        suspect: args.suspect,
        validation: args.validation,
        features: args.features,
        rank_feature: args.rank_feature,
        alpha: args.alpha,
        expect: args.expect.map(Into::into),
        seed: args.seed,
        study: args.members.zip(args.sizes).map(|(members, sizes)| StudyOptions { members, sizes, draws: args.draws }),
    })?;
    outcome.write(&args.out_dir)?;
    print!("{}", outcome.summary);
    for c in &outcome.report.checks {
        println!("  [{}] {}: {}", if c.passed { "pass" } else { "FAIL" }, c.name, c.message);
    }
    println!("reports in {}", args.out_dir.display());
    Ok(if outcome.report.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
