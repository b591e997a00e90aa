//! `mint eval`: compliance evaluation of a model + head on member and non-member sets.
//!
//! Samples go through the library's own runtime: the audited model runs in tract, its taps
//! are submitted to an [`Auditor`] built from the very configuration a vendor deploys, and the
//! scores come back through the auditor's result sink. Around the head's figures the report
//! puts baselines that need no head (the outcome's confidence, the loss when labels exist)
//! and the distribution-shift control (a blind classifier on the raw inputs).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use mint_audit::Config;
use serde_json::json;

use mint_toolkit::blind;
use mint_toolkit::calibrate;
use mint_toolkit::data::{self, Images};
use mint_toolkit::descriptor::Descriptor;
use mint_toolkit::report::{self, Check, Curve};
use mint_toolkit::roc::{self, Figures};
use mint_toolkit::score::{score_sets, Scored};
use mint_toolkit::split::Split;

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

/// `mint eval`, in phases: load both sets, score them through the library's runtime, compute
/// the figures and baselines, check the gates, write the reports.
pub fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let config = Config::from_path(&args.config)?;
    let desc = Descriptor::from_config(&config)?;
    let (members, non_members, data_note) = load_sets(&args, desc.input_shape())?;
    let scored = score_sets(args.threads, args.batch, &config, &desc, &members, &non_members)?;
    let calibrated = match args.calibrate {
        Some(target) => Some(calibrate::calibrate(
            &scored.pos,
            &scored.neg,
            target,
            args.calibration_fraction,
            args.bootstrap,
            args.seed,
        )?),
        None => None,
    };
    let threshold = calibrated.as_ref().map_or(config.threshold(), |c| c.threshold) as f64;
    let figures = compute_figures(&args, &scored, &members, &non_members, threshold);
    let (mut checks, shift_message) = gates(&args, &scored, &figures);
    let calibration_source = format!(
        "mint eval --calibrate: {} of {} non-members of {}, seed {}",
        calibrated.as_ref().map_or(0, |c| c.flagged.1),
        non_members.len(),
        match (data_note["split"].as_str(), data_note["non_members"].as_str()) {
            (Some(split), _) => format!(
                "{split} ({} eval, {})",
                data_note["protocol"].as_str().unwrap_or_default(),
                data_note["non_members_source"].as_str().unwrap_or_default()
            ),
            (None, Some(path)) => path.to_string(),
            (None, None) => "the given set".to_string(),
        },
        args.seed
    );
    if let Some(c) = &calibrated {
        if let Some(agrees) = c.check_agrees() {
            checks.push(Check {
                name: "calibration: the check non-members' FPR agrees with the calibrated interval".into(),
                passed: agrees,
                message: format!(
                    "{} of {} check non-members at or above {} (calibrated FPR interval [{:.4}, {:.4}])",
                    c.check.0, c.check.1, c.threshold, c.fpr_interval.0, c.fpr_interval.1
                ),
            });
        }
    }
    let passed = checks.iter().all(|c| c.passed);

    std::fs::create_dir_all(&args.out_dir)?;
    let head_taps: Vec<String> = config.head_taps()?.iter().map(|&i| config.taps[i].name.clone()).collect();
    let head_kind = config.head.kind();
    let report = json!({
        "mint_version": mint_audit::VERSION,
        "model": {"id": config.model.id, "version": config.model.version, "onnx": desc.onnx(),
                  "sha256": mint_head::file_sha256(desc.onnx())?},
        "head": {"kind": head_kind, "sha256": scored.head_sha256, "threshold": threshold, "taps": head_taps},
        "data": data_note,
        "mint": figures.head,
        "baselines": figures.baselines,
        "calibration": calibrated.as_ref().map(|c| c.report(&calibration_source)),
        "distribution_shift": {"blind_auc": figures.blind.auc, "threshold": args.shift_auc,
                               "detected": figures.shift, "message": shift_message},
        "checks": checks,
        "passed": passed,
        "bootstrap": {"rounds": args.bootstrap, "seed": args.seed},
        "run": {"seconds": started.elapsed().as_secs_f64(), "threads": args.threads, "reduce_isa": mint_audit::reduce_isa()},
    });
    let summary = summary(&config, &figures.head, &figures.blind, &figures.baselines, &shift_message);
    write_reports(&args, &config, head_kind, &report, &checks, &summary, &scored, &figures, started)?;
    if let Some(c) = &calibrated {
        write_scores_parts(&args, c)?;
    }
    if let (Some(c), Some(path)) = (&calibrated, &args.write_config) {
        write_config(&args.config, path, &c.config_block(&calibration_source))?;
        println!("calibrated configuration written to {}", path.display());
    }

    println!("{summary}");
    if let Some(c) = &calibrated {
        println!(
            "  calibrated threshold {} for FPR {}: {} of {} calibration non-members flagged, FPR on new non-members in [{:.4}, {:.4}] (95%), TPR {:.3} [{:.3}, {:.3}]; check: {} of {}",
            c.threshold, c.target_fpr, c.flagged.0, c.flagged.1, c.fpr_interval.0, c.fpr_interval.1,
            c.tpr.0, c.tpr.1, c.tpr.2, c.check.0, c.check.1
        );
    }
    for c in &checks {
        println!("  [{}] {}", if c.passed { "pass" } else { "FAIL" }, c.name);
    }
    println!("reports in {}", args.out_dir.display());
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Members and non-members, from a split or from two sources, and what the report says of them.
fn load_sets(args: &Args, input: [usize; 3]) -> Result<(Images, Images, serde_json::Value)> {
    let (mut members, mut non_members, data_note) = match (&args.split, &args.members, &args.non_members) {
        (Some(split_path), None, None) => {
            let name = args.protocol.as_deref().expect("required by clap");
            let (m, n, mut note) = Split::load(split_path)?.load_eval(name, input)?;
            note["split"] = json!(split_path);
            (m, n, note)
        }
        (None, Some(m), Some(n)) => {
            let mut mi = data::load(m, input).context("--members")?;
            let mut ni = data::load(n, input).context("--non-members")?;
            let labelled = [
                (&mut mi, &args.members_labels, "--members-labels"),
                (&mut ni, &args.non_members_labels, "--non-members-labels"),
            ];
            for (images, labels, flag) in labelled {
                if let Some(path) = labels {
                    images.labels = Some(data::load_labels(path, images.len()).context(flag)?);
                }
            }
            (mi, ni, json!({"members": m, "non_members": n}))
        }
        _ => bail!("give --split and --protocol, or --members and --non-members"),
    };
    if let Some(limit) = args.limit {
        members = members.truncated(limit);
        non_members = non_members.truncated(limit);
    }
    ensure!(!members.is_empty() && !non_members.is_empty(), "both sets need samples");
    Ok((members, non_members, data_note))
}

/// The head's figures, the baselines beside it, and the ROC curves of both.
struct AllFigures {
    head: Figures,
    blind: Figures,
    baselines: serde_json::Map<String, serde_json::Value>,
    curves: Vec<(String, Vec<(f64, f64)>)>,
    shift: bool,
}

fn compute_figures(args: &Args, s: &Scored, members: &Images, non_members: &Images, threshold: f64) -> AllFigures {
    let (pos, neg) = (&s.pos, &s.neg);
    let head = roc::figures(pos, neg, Some(threshold), args.bootstrap, args.seed);
    let (blind_pos, blind_neg) = blind::scores(members, non_members, args.seed);
    let blind = roc::figures(&blind_pos, &blind_neg, None, args.bootstrap, args.seed);
    let mut baselines = serde_json::Map::new();
    baselines.insert("blind".into(), json!(blind));
    let mut curves: Vec<(String, Vec<(f64, f64)>)> = vec![
        (format!("MINT head (AUC {:.3})", head.auc.value), roc::curve(pos, neg)),
        (format!("blind baseline (AUC {:.3})", blind.auc.value), roc::curve(&blind_pos, &blind_neg)),
    ];
    if s.has_outcome {
        let width = s.outcome_width;
        let conf = |o: &[f32]| o.chunks(width).map(max_log_softmax).collect::<Vec<f64>>();
        let (cp, cn) = (conf(&s.outcomes[0]), conf(&s.outcomes[1]));
        let confidence = roc::figures(&cp, &cn, None, args.bootstrap, args.seed);
        curves.push((format!("confidence baseline (AUC {:.3})", confidence.auc.value), roc::curve(&cp, &cn)));
        baselines.insert("confidence".into(), json!(confidence));
        if let (Some(lm), Some(ln)) = (&members.labels, &non_members.labels) {
            let loss = |o: &[f32], labels: &[u8]| {
                o.chunks(width).zip(labels).map(|(row, &y)| -cross_entropy(row, y as usize)).collect::<Vec<f64>>()
            };
            let (lp, lneg) = (loss(&s.outcomes[0], lm), loss(&s.outcomes[1], ln));
            baselines.insert("loss".into(), json!(roc::figures(&lp, &lneg, None, args.bootstrap, args.seed)));
        } else {
            let why = match (&members.labels, &non_members.labels) {
                (None, None) => {
                    "no labels given (--members-labels, --non-members-labels, or labels in the split's sources)"
                }
                (None, _) => "the members have no labels (--members-labels)",
                _ => "the non-members have no labels (--non-members-labels)",
            };
            baselines.insert("loss".into(), json!({"skipped": why}));
        }
    } else {
        let why = "the configuration has no outcome tap, which both baselines read";
        baselines.insert("confidence".into(), json!({"skipped": why}));
        baselines.insert("loss".into(), json!({"skipped": why}));
    }
    let shift = blind.auc.value >= args.shift_auc;
    AllFigures { head, blind, baselines, curves, shift }
}

/// The run's pass/fail checks: the thresholds asked for, then the distribution-shift control;
/// and the control's message.
fn gates(args: &Args, s: &Scored, f: &AllFigures) -> (Vec<Check>, String) {
    let (pos, neg, head) = (&s.pos, &s.neg, &f.head);
    let shift_message = if f.shift {
        format!(
            "DISTRIBUTION SHIFT: a blind classifier that never sees the model separates the two sets \
             (AUC {}). Members and non-members differ in distribution, so the head may be detecting \
             that difference rather than membership: do not trust the membership figures of this run.",
            f.blind.auc
        )
    } else {
        format!(
            "No distribution shift found: the blind baseline stays below AUC {} (AUC {}).",
            args.shift_auc, f.blind.auc
        )
    };

    let mut checks = Vec::new();
    let mut gate = |name: String, passed: bool, value: f64| {
        checks.push(Check { message: format!("{name}: measured {value:.4}"), name, passed });
    };
    if let Some(x) = args.min_auc {
        gate(format!("auc >= {x}"), head.auc.value >= x, head.auc.value);
    }
    if let Some(x) = args.max_auc {
        gate(format!("auc <= {x}"), head.auc.value <= x, head.auc.value);
    }
    if let Some(x) = args.min_balanced_accuracy {
        let v = head.balanced_accuracy.map_or(f64::NAN, |e| e.value);
        gate(format!("balanced_accuracy >= {x}"), v >= x, v);
    }
    for &(fpr, tpr) in &args.min_tpr_at_fpr {
        let v = roc::tpr_at_fpr(pos, neg, fpr);
        gate(format!("tpr_at_fpr({fpr}) >= {tpr}"), v >= tpr, v);
    }
    for &(fpr, tpr) in &args.max_tpr_at_fpr {
        let v = roc::tpr_at_fpr(pos, neg, fpr);
        gate(format!("tpr_at_fpr({fpr}) <= {tpr}"), v <= tpr, v);
    }
    checks.push(Check {
        name: format!("distribution-shift control (blind AUC < {})", args.shift_auc),
        passed: !f.shift || args.allow_shift,
        message: shift_message.clone(),
    });
    (checks, shift_message)
}

/// report.json, junit.xml, the ROC plots and scores.csv.
#[allow(clippy::too_many_arguments)]
fn write_reports(
    args: &Args,
    config: &Config,
    head_kind: &str,
    report: &serde_json::Value,
    checks: &[Check],
    summary: &str,
    s: &Scored,
    f: &AllFigures,
    started: Instant,
) -> Result<()> {
    std::fs::write(args.out_dir.join("report.json"), serde_json::to_string_pretty(report)?)?;
    std::fs::write(
        args.out_dir.join("junit.xml"),
        report::junit(
            &format!("{} / {}", config.model.id, head_kind),
            checks,
            started.elapsed().as_secs_f64(),
            summary,
        ),
    )?;
    let curves: Vec<Curve<'_>> = f.curves.iter().map(|(l, p)| Curve { label: l.clone(), points: p }).collect();
    report::roc_plots(
        &curves,
        &format!("MINT ROC: {}", config.model.id),
        &args.out_dir.join("roc.svg"),
        &args.out_dir.join("roc_loglog.svg"),
    )?;
    let mut csv = String::from("set,index,score\n");
    for (i, v) in s.pos.iter().enumerate() {
        csv.push_str(&format!("member,{i},{v}\n"));
    }
    for (i, v) in s.neg.iter().enumerate() {
        csv.push_str(&format!("non_member,{i},{v}\n"));
    }
    std::fs::write(args.out_dir.join("scores.csv"), csv)?;
    Ok(())
}

/// calibration.csv: which non-members chose the threshold and which checked it, so that a
/// later measurement (docs/evidence.md) can use non-members calibration never saw.
fn write_scores_parts(args: &Args, c: &calibrate::Calibrated) -> Result<()> {
    let mut csv = String::from("part,index\n");
    for (part, indices) in [("calibration", &c.calibration_part), ("check", &c.check_part)] {
        for i in indices.iter() {
            csv.push_str(&format!("{part},{i}\n"));
        }
    }
    std::fs::write(args.out_dir.join("calibration.csv"), csv)?;
    Ok(())
}

/// Writes `original` with `head.calibration` set (and `head.threshold` to match) to `path`,
/// then reads it back as the library would.
fn write_config(original: &std::path::Path, path: &std::path::Path, block: &serde_json::Value) -> Result<()> {
    let folder = |p: &std::path::Path| {
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        std::fs::canonicalize(parent).with_context(|| format!("no folder {}", parent.display()))
    };
    ensure!(
        folder(original)? == folder(path)?,
        "--write-config {} must lie beside {}: relative paths in the configuration are resolved against its folder",
        path.display(),
        original.display()
    );
    let text = std::fs::read_to_string(original).with_context(|| format!("reading {}", original.display()))?;
    let mut json: serde_json::Value = serde_json::from_str(&text)?;
    let head = json.get_mut("head").and_then(|h| h.as_object_mut()).context("the configuration has no head")?;
    head.insert("threshold".into(), block["threshold"].clone());
    head.insert("calibration".into(), block.clone());
    std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")?;
    Config::from_path(path)
        .with_context(|| format!("the calibrated configuration {} does not load", path.display()))?;
    Ok(())
}

fn summary(
    config: &Config,
    head: &Figures,
    blind: &Figures,
    baselines: &serde_json::Map<String, serde_json::Value>,
    shift: &str,
) -> String {
    let mut s = format!(
        "{} ({} members, {} non-members)\n  MINT head   AUC {}  TPR@1%FPR {}  TPR@0.1%FPR {}  balanced accuracy {}\n  blind       AUC {}\n",
        config.model.id,
        head.members,
        head.non_members,
        head.auc,
        head.tpr_at_1pct_fpr,
        head.tpr_at_0_1pct_fpr,
        head.balanced_accuracy.map(|e| e.to_string()).unwrap_or_default(),
        blind.auc,
    );
    for name in ["confidence", "loss"] {
        if let Some(why) = baselines.get(name).and_then(|b| b["skipped"].as_str()) {
            s.push_str(&format!("  {name:<11} skipped: {why}\n"));
        } else if let Some(b) = baselines.get(name) {
            let auc = &b["auc"];
            s.push_str(&format!(
                "  {name:<11} AUC {:.3} [{:.3}, {:.3}]\n",
                auc["value"].as_f64().unwrap_or(f64::NAN),
                auc["low"].as_f64().unwrap_or(f64::NAN),
                auc["high"].as_f64().unwrap_or(f64::NAN)
            ));
        }
    }
    s.push_str("  ");
    s.push_str(shift);
    s
}

/// `log Σ exp(l)` of a logit row, shifted by its max so that nothing overflows; also the max.
fn log_sum_exp(logits: &[f32]) -> (f64, f64) {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    (m + logits.iter().map(|&l| (l as f64 - m).exp()).sum::<f64>().ln(), m)
}

/// Largest log-probability of a logit row (a label-free confidence score).
fn max_log_softmax(logits: &[f32]) -> f64 {
    let (lse, m) = log_sum_exp(logits);
    m - lse
}

/// Cross-entropy of a logit row against class `y`.
fn cross_entropy(logits: &[f32], y: usize) -> f64 {
    log_sum_exp(logits).0 - logits.get(y).copied().unwrap_or(f32::NAN) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_and_loss_are_consistent() {
        let row = [2.0f32, 0.0, -1.0];
        let conf = max_log_softmax(&row);
        assert!((conf + cross_entropy(&row, 0)).abs() < 1e-12);
        assert!(cross_entropy(&row, 2) > cross_entropy(&row, 0));
        assert!(parse_pair("0.01:0.2").is_ok() && parse_pair("2:0.1").is_err() && parse_pair("x").is_err());
    }
}
