//! Compliance evaluation of a model + head on member and non-member sets (`mint eval`).
//!
//! Samples go through the library's own runtime: the audited model runs in tract, its taps
//! are submitted to an [`mint_audit::Auditor`] built from the very configuration a vendor deploys, and the
//! scores come back through the auditor's result sink. Around the head's figures the report
//! puts baselines that need no head (the outcome's confidence, the loss when labels exist)
//! and the distribution-shift control (a blind classifier on the raw inputs). The report is
//! [`EvalReport`] (schema docs/schemas/eval_report.schema.json).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use mint_audit::Config;
use serde_json::json;

use crate::baselines::{cross_entropy, max_log_softmax};
use crate::blind;
use crate::calibrate;
use crate::data::{self, Images};
use crate::descriptor::Descriptor;
use crate::formats::reports::{EvalReport, HeadRef, ModelRef, Shift};
use crate::report::{self, Check, Curve};
use crate::roc::{self, Figures};
use crate::score::{score_sets, Scored};
use crate::split::Split;

/// Where the member and non-member sets come from.
#[derive(Debug, Clone)]
pub enum Sets {
    /// A split's eval sets of `protocol`.
    Split { path: PathBuf, protocol: String },
    /// Two sources (IDX, NPY or image folders), with class labels for the loss baseline.
    Files {
        members: PathBuf,
        non_members: PathBuf,
        members_labels: Option<PathBuf>,
        non_members_labels: Option<PathBuf>,
    },
}

/// The gates a run passes or fails on (each off when `None` or empty).
#[derive(Debug, Clone, Default)]
pub struct Gates {
    pub min_auc: Option<f64>,
    pub max_auc: Option<f64>,
    pub min_balanced_accuracy: Option<f64>,
    /// (FPR, TPR): the TPR at that FPR must be at least TPR.
    pub min_tpr_at_fpr: Vec<(f64, f64)>,
    /// (FPR, TPR): the TPR at that FPR must be at most TPR (a privacy gate).
    pub max_tpr_at_fpr: Vec<(f64, f64)>,
}

/// Calibrating the live threshold for a target false-positive rate.
#[derive(Debug, Clone, Copy)]
pub struct Calibrate {
    pub target_fpr: f64,
    /// Share of the non-members that choose the threshold; the rest check it.
    pub fraction: f64,
}

/// An evaluation to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The auditor configuration (with `model.onnx`, `model.input_shape` and tap `tensor`s).
    pub config: PathBuf,
    pub sets: Sets,
    /// Use at most this many samples of each set.
    pub limit: Option<usize>,
    /// Bootstrap resamples for the 95% intervals.
    pub bootstrap: usize,
    pub seed: u64,
    pub threads: usize,
    pub batch: usize,
    pub gates: Gates,
    /// Blind-baseline AUC from which the sets are taken to differ in distribution.
    pub shift_auc: f64,
    /// Report a distribution shift as a warning instead of failing the run.
    pub allow_shift: bool,
    pub calibrate: Option<Calibrate>,
}

/// An evaluation's outcome.
pub struct Evaluation {
    pub report: EvalReport,
    pub summary: String,
    pub calibrated: Option<calibrate::Calibrated>,
    /// Where the calibration non-members came from, in words (for the configuration).
    pub calibration_source: String,
    config: Config,
    scored: Scored,
    curves: Vec<(String, Vec<(f64, f64)>)>,
    started: Instant,
}

/// An evaluation, in phases: load both sets, score them through the library's runtime, compute
/// the figures and baselines, calibrate when asked, check the gates.
pub fn run(args: &Options) -> Result<Evaluation> {
    let started = Instant::now();
    let config = Config::from_path(&args.config)?;
    let desc = Descriptor::from_config(&config)?;
    let (members, non_members, data_note) = load_sets(args, desc.input_shape())?;
    let scored = score_sets(args.threads, args.batch, &config, &desc, &members, &non_members)?;
    let calibrated = match args.calibrate {
        Some(c) => {
            Some(calibrate::calibrate(&scored.pos, &scored.neg, c.target_fpr, c.fraction, args.bootstrap, args.seed)?)
        }
        None => None,
    };
    let threshold = calibrated.as_ref().map_or(config.threshold(), |c| c.threshold) as f64;
    let figures = compute_figures(args, &scored, &members, &non_members, threshold);
    let (mut checks, shift_message) = gates(args, &scored, &figures);
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

    let head_taps: Vec<String> = config.head_taps()?.iter().map(|&i| config.taps[i].name.clone()).collect();
    let report = EvalReport {
        mint_version: mint_audit::VERSION.into(),
        model: ModelRef {
            id: config.model.id.clone(),
            version: config.model.version.clone(),
            onnx: Some(desc.onnx().display().to_string()),
            sha256: Some(mint_head::file_sha256(desc.onnx())?),
        },
        head: HeadRef {
            kind: config.head.kind().into(),
            sha256: scored.head_sha256.clone(),
            threshold,
            taps: head_taps,
            calibrated: None,
        },
        data: data_note,
        mint: figures.head.clone(),
        baselines: figures.baselines.clone(),
        calibration: calibrated.as_ref().map(|c| c.report(&calibration_source)),
        distribution_shift: Shift {
            blind_auc: figures.blind.auc,
            threshold: args.shift_auc,
            detected: figures.shift,
            message: shift_message.clone(),
        },
        checks,
        passed,
        bootstrap: json!({"rounds": args.bootstrap, "seed": args.seed}),
        run: json!({"seconds": started.elapsed().as_secs_f64(), "threads": args.threads,
                    "reduce_isa": mint_audit::reduce_isa()}),
    };
    let summary = summary(&config, &figures.head, &figures.blind, &figures.baselines, &shift_message);
    Ok(Evaluation { report, summary, calibrated, calibration_source, config, scored, curves: figures.curves, started })
}

/// Members and non-members, from a split or from two sources, and what the report says of them.
fn load_sets(args: &Options, input: [usize; 3]) -> Result<(Images, Images, serde_json::Value)> {
    let (mut members, mut non_members, data_note) = match &args.sets {
        Sets::Split { path, protocol } => {
            let (m, n, mut note) = Split::load(path)?.load_eval(protocol, input)?;
            note["split"] = json!(path);
            (m, n, note)
        }
        Sets::Files { members: m, non_members: n, members_labels, non_members_labels } => {
            let mut mi = data::load(m, input).context("--members")?;
            let mut ni = data::load(n, input).context("--non-members")?;
            let labelled =
                [(&mut mi, members_labels, "--members-labels"), (&mut ni, non_members_labels, "--non-members-labels")];
            for (images, labels, flag) in labelled {
                if let Some(path) = labels {
                    images.labels = Some(data::load_labels(path, images.len()).context(flag)?);
                }
            }
            (mi, ni, json!({"members": m, "non_members": n}))
        }
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

fn compute_figures(args: &Options, s: &Scored, members: &Images, non_members: &Images, threshold: f64) -> AllFigures {
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
fn gates(args: &Options, s: &Scored, f: &AllFigures) -> (Vec<Check>, String) {
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
    let g = &args.gates;
    if let Some(x) = g.min_auc {
        gate(format!("auc >= {x}"), head.auc.value >= x, head.auc.value);
    }
    if let Some(x) = g.max_auc {
        gate(format!("auc <= {x}"), head.auc.value <= x, head.auc.value);
    }
    if let Some(x) = g.min_balanced_accuracy {
        let v = head.balanced_accuracy.map_or(f64::NAN, |e| e.value);
        gate(format!("balanced_accuracy >= {x}"), v >= x, v);
    }
    for &(fpr, tpr) in &g.min_tpr_at_fpr {
        let v = roc::tpr_at_fpr(pos, neg, fpr);
        gate(format!("tpr_at_fpr({fpr}) >= {tpr}"), v >= tpr, v);
    }
    for &(fpr, tpr) in &g.max_tpr_at_fpr {
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

impl Evaluation {
    /// Writes report.json, junit.xml, the ROC plots (roc.svg, roc_loglog.svg), scores.csv and,
    /// when calibrated, calibration.csv into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let config = &self.config;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&self.report)?)?;
        std::fs::write(
            dir.join("junit.xml"),
            report::junit(
                &format!("{} / {}", config.model.id, self.report.head.kind),
                &self.report.checks,
                self.started.elapsed().as_secs_f64(),
                &self.summary,
            ),
        )?;
        let curves: Vec<Curve<'_>> = self.curves.iter().map(|(l, p)| Curve { label: l.clone(), points: p }).collect();
        report::roc_plots(
            &curves,
            &format!("MINT ROC: {}", config.model.id),
            &dir.join("roc.svg"),
            &dir.join("roc_loglog.svg"),
        )?;
        let mut csv = String::from("set,index,score\n");
        for (i, v) in self.scored.pos.iter().enumerate() {
            csv.push_str(&format!("member,{i},{v}\n"));
        }
        for (i, v) in self.scored.neg.iter().enumerate() {
            csv.push_str(&format!("non_member,{i},{v}\n"));
        }
        std::fs::write(dir.join("scores.csv"), csv)?;
        if let Some(c) = &self.calibrated {
            write_scores_parts(dir, c)?;
        }
        Ok(())
    }

    /// Writes the configuration `original` with the calibration block to `path` (beside the
    /// original, whose relative paths it keeps), read back as the library would.
    pub fn write_config(&self, original: &Path, path: &Path) -> Result<()> {
        let c = self.calibrated.as_ref().context("this evaluation did not calibrate")?;
        write_config(original, path, &c.config_block(&self.calibration_source))
    }
}

/// calibration.csv: which non-members chose the threshold and which checked it, so that a
/// later measurement (docs/evidence.md) can use non-members calibration never saw.
fn write_scores_parts(dir: &Path, c: &calibrate::Calibrated) -> Result<()> {
    let mut csv = String::from("part,index\n");
    for (part, indices) in [("calibration", &c.calibration_part), ("check", &c.check_part)] {
        for i in indices.iter() {
            csv.push_str(&format!("{part},{i}\n"));
        }
    }
    std::fs::write(dir.join("calibration.csv"), csv)?;
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
