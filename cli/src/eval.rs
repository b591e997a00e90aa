//! `mint eval`: compliance evaluation of a model + head on member and non-member sets
//! ([`mint_toolkit::eval`]).
//!
//! Samples go through the library's own runtime: the audited model runs in tract, its taps
//! are submitted to an [`Auditor`] built from the very configuration a vendor deploys, and the
//! scores come back through the auditor's result sink. Around the head's figures the report
//! puts baselines that need no head (the outcome's confidence, the loss when labels exist)
//! and the distribution-shift control (a blind classifier on the raw inputs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use mint_toolkit::eval::{self, Calibrate, Gates, Options, Sets};

#[derive(clap::Args)]
/// Evaluate a model + MINT head on member / non-member sets, write reports, gate on thresholds.
pub struct Args {
    /// The auditor configuration (with `model.onnx`, `model.input_shape` and tap `tensor`s).
    #[arg(long)]
    config: PathBuf,
    /// A split file; evaluates its --protocol's `eval` sets.
    #[arg(long, requires = "protocol", conflicts_with_all = ["members", "non_members"])]
    split: Option<PathBuf>,
    #[arg(long)]
    protocol: Option<String>,
    /// Member samples: IDX file, NPY array or folder of images.
    #[arg(long, requires = "non_members")]
    members: Option<PathBuf>,
    /// Non-member samples, likewise.
    #[arg(long)]
    non_members: Option<PathBuf>,
    /// Class labels of the members (IDX, or NPY of integers), for the loss baseline.
    #[arg(long)]
    members_labels: Option<PathBuf>,
    /// Class labels of the non-members (IDX, or NPY of integers), for the loss baseline.
    #[arg(long)]
    non_members_labels: Option<PathBuf>,
    /// Use at most this many samples of each set.
    #[arg(long)]
    limit: Option<usize>,
    /// Folder for report.json, junit.xml, roc.svg, roc_loglog.svg and scores.csv.
    #[arg(long)]
    out_dir: PathBuf,
    /// Bootstrap resamples for the 95% intervals.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Fail unless the head's ROC AUC is at least this.
    #[arg(long)]
    min_auc: Option<f64>,
    /// Fail unless the head's ROC AUC is at most this (a privacy gate).
    #[arg(long)]
    max_auc: Option<f64>,
    /// Fail unless the balanced accuracy at the configured threshold is at least this.
    #[arg(long)]
    min_balanced_accuracy: Option<f64>,
    /// FPR:TPR — fail unless the TPR at that FPR is at least TPR (repeatable).
    #[arg(long, value_parser = parse_pair)]
    min_tpr_at_fpr: Vec<(f64, f64)>,
    /// FPR:TPR — fail unless the TPR at that FPR is at most TPR (repeatable).
    #[arg(long, value_parser = parse_pair)]
    max_tpr_at_fpr: Vec<(f64, f64)>,
    /// Blind-baseline AUC from which the sets are taken to differ in distribution.
    #[arg(long, default_value_t = 0.6)]
    shift_auc: f64,
    /// Report a distribution shift as a warning instead of failing the run.
    #[arg(long)]
    allow_shift: bool,
    /// Choose the live threshold for this false-positive rate (e.g. 0.01) on a seeded part of
    /// the non-members, measure it on the rest, and report both (docs/evidence.md).
    #[arg(long, value_name = "FPR")]
    calibrate: Option<f64>,
    /// Share of the non-members that choose the threshold; the rest check it.
    #[arg(long, default_value_t = 0.5, requires = "calibrate")]
    calibration_fraction: f64,
    /// Write the configuration with its `head.calibration` block here (beside the original,
    /// whose relative paths it keeps; may be the original itself).
    #[arg(long, requires = "calibrate")]
    write_config: Option<PathBuf>,
}

fn parse_pair(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s.split_once(':').ok_or("expected FPR:TPR, e.g. 0.01:0.05")?;
    let a: f64 = a.parse().map_err(|e| format!("FPR: {e}"))?;
    let b: f64 = b.parse().map_err(|e| format!("TPR: {e}"))?;
    if !(0.0..=1.0).contains(&a) || !(0.0..=1.0).contains(&b) {
        return Err("FPR and TPR are in [0, 1]".into());
    }
    Ok((a, b))
}

pub fn run(args: Args) -> Result<ExitCode> {
    let sets = match (args.split, args.protocol, args.members, args.non_members) {
        (Some(path), Some(protocol), None, None) => Sets::Split { path, protocol },
        (None, None, Some(members), Some(non_members)) => Sets::Files {
            members,
            non_members,
            members_labels: args.members_labels,
            non_members_labels: args.non_members_labels,
        },
        _ => bail!("give --split and --protocol, or --members and --non-members"),
    };
    let evaluation = eval::run(&Options {
        config: args.config.clone(),
        sets,
        limit: args.limit,
        bootstrap: args.bootstrap,
        seed: args.seed,
        threads: args.threads,
        batch: args.batch,
        gates: Gates {
            min_auc: args.min_auc,
            max_auc: args.max_auc,
            min_balanced_accuracy: args.min_balanced_accuracy,
            min_tpr_at_fpr: args.min_tpr_at_fpr,
            max_tpr_at_fpr: args.max_tpr_at_fpr,
        },
        shift_auc: args.shift_auc,
        allow_shift: args.allow_shift,
        calibrate: args.calibrate.map(|target_fpr| Calibrate { target_fpr, fraction: args.calibration_fraction }),
    })?;
    evaluation.write(&args.out_dir)?;
    if let Some(path) = &args.write_config {
        evaluation.write_config(&args.config, path)?;
        println!("calibrated configuration written to {}", path.display());
    }

    println!("{}", evaluation.summary);
    if let Some(c) = &evaluation.calibrated {
        println!(
            "  calibrated threshold {} for FPR {}: {} of {} calibration non-members flagged, FPR on new non-members in [{:.4}, {:.4}] (95%), TPR {:.3} [{:.3}, {:.3}]; check: {} of {}",
            c.threshold, c.target_fpr, c.flagged.0, c.flagged.1, c.fpr_interval.0, c.fpr_interval.1,
            c.tpr.0, c.tpr.1, c.tpr.2, c.check.0, c.check.1
        );
    }
    for c in &evaluation.report.checks {
        println!("  [{}] {}", if c.passed { "pass" } else { "FAIL" }, c.name);
    }
    println!("reports in {}", args.out_dir.display());
    Ok(if evaluation.report.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fpr_tpr_pairs_are_checked() {
        assert!(parse_pair("0.01:0.2").is_ok() && parse_pair("2:0.1").is_err() && parse_pair("x").is_err());
    }
}
