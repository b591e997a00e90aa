//! `mint dataset-test`: was a suspect dataset in the training set? Scores a suspect set and a
//! reference set of known non-members through the library's runtime (as `mint eval` does), and
//! tests them with the statistics the library's live evidence uses (`mint_audit::evidence`):
//!
//! - the primary test: Mann-Whitney rank test of suspect against reference scores (one-sided,
//!   suspect higher), with the AUC as effect size; it needs no calibration;
//! - with a calibrated configuration, a binomial test of the suspect's flags against the
//!   calibrated FPR (its upper bound), and the estimated member fraction with its interval;
//! - the distribution-shift control of `mint eval` (a blind classifier on the raw inputs): a
//!   reference that differs from the suspect set in distribution makes the rank test detect the
//!   difference, not membership;
//! - a power table: suspect samples needed for p < alpha at a given power, at the effect seen.
//!
//! Exit codes: 0 when the expectation (`--expect`) holds or none is given, 1 when it does not
//! or a control fails, 2 on error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, ensure, Result};
use mint_audit::evidence::stats::{self, Interval, ScoreBins};
use mint_audit::Config;
use serde_json::json;

use mint_toolkit::blind;
use mint_toolkit::data::{self, Images};
use mint_toolkit::descriptor::Descriptor;
use mint_toolkit::power::{finite, power_table};
use mint_toolkit::report::{self, Check};
use mint_toolkit::roc;
use mint_toolkit::score::score_sets;
use mint_toolkit::split::Split;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Expect {
    /// The suspect set must be found (a regulator's control on a known-member set).
    Evidence,
    /// The suspect set must not be found (a vendor's gate: held-out data stays undetectable).
    NoEvidence,
}

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
    let started = Instant::now();
    ensure!(args.alpha > 0.0 && args.alpha < 0.5, "--alpha must lie in (0, 0.5)");
    let config = Config::from_path(&args.config)?;
    let desc = Descriptor::from_config(&config)?;
    let (suspect, reference, data_note) = load_sets(&args, desc.input_shape())?;
    let scored = score_sets(args.threads, args.batch, &config, &desc, &suspect, &reference)?;
    let (s, r) = (&scored.pos, &scored.neg);

    let (rank, _) = stats::rank_test(
        &ScoreBins::from_scores(s.iter().map(|&x| x as f32)),
        &ScoreBins::from_scores(r.iter().map(|&x| x as f32)),
    );
    let auc = roc::auc(s, r);
    let threshold = config.threshold();
    let flagged = s.iter().filter(|&&x| x as f32 >= threshold).count() as u64;
    let reference_flagged = r.iter().filter(|&&x| x as f32 >= threshold).count() as u64;
    let n = s.len() as u64;
    let calibrated = config.calibration().map(|c| {
        let fpr = Interval { estimate: c.fpr.estimate, low: c.fpr.low, high: c.fpr.high };
        let tpr = Interval { estimate: c.tpr.estimate, low: c.tpr.low, high: c.tpr.high };
        (stats::binomial_test(flagged, n, fpr.high), stats::member_fraction(flagged, n, fpr, tpr), fpr)
    });
    let (blind_s, blind_r) = blind::scores(&suspect, &reference, args.seed);
    let blind_auc = roc::auc(&blind_s, &blind_r);
    let shift = blind_auc >= args.shift_auc;

    let evidence = rank.p_value < args.alpha;
    let power =
        power_table(auc, r.len(), args.alpha, calibrated.map(|(_, _, fpr)| fpr.high), flagged as f64 / n as f64);
    let mut checks = Vec::new();
    if let Some(expect) = args.expect {
        let (name, passed) = match expect {
            Expect::Evidence => (format!("the suspect set is found (rank p < {})", args.alpha), evidence),
            Expect::NoEvidence => (format!("the suspect set is not found (rank p >= {})", args.alpha), !evidence),
        };
        checks.push(Check { message: format!("{name}: p = {:.3e}, AUC {auc:.3}", rank.p_value), name, passed });
    }
    let shift_message = if shift {
        format!(
            "DISTRIBUTION SHIFT: a blind classifier on the raw inputs separates suspect from reference (AUC {blind_auc:.3}): \
             the rank test may be detecting that difference rather than membership. Use a reference from the suspect set's distribution."
        )
    } else {
        format!("No distribution shift found: the blind baseline stays below AUC {} ({blind_auc:.3}).", args.shift_auc)
    };
    checks.push(Check {
        name: format!("distribution-shift control (blind AUC < {})", args.shift_auc),
        passed: !shift || args.allow_shift,
        message: shift_message.clone(),
    });
    let passed = checks.iter().all(|c| c.passed);

    let interval = |i: Interval| json!({"estimate": finite(i.estimate), "low": finite(i.low), "high": finite(i.high)});
    let report = json!({
        "mint_version": mint_audit::VERSION,
        "model": {"id": config.model.id, "version": config.model.version},
        "head": {"kind": config.head.kind(), "sha256": scored.head_sha256, "threshold": threshold,
                 "calibrated": config.calibration().is_some()},
        "data": data_note,
        "suspect": {"samples": s.len(), "flagged": flagged},
        "reference": {"samples": r.len(), "flagged": reference_flagged},
        "alpha": args.alpha,
        "rank_test": {"z": rank.statistic, "p_value": rank.p_value, "auc": auc, "cliffs_delta": 2.0 * auc - 1.0},
        "binomial_test": calibrated.map(|(t, _, fpr)| json!({"p_value": t.p_value, "z": t.statistic, "null_fpr": fpr.high})),
        "member_fraction": calibrated.map(|(_, f, _)| interval(f)),
        "evidence": evidence,
        "power": power,
        "distribution_shift": {"blind_auc": blind_auc, "threshold": args.shift_auc, "detected": shift, "message": shift_message},
        "checks": checks,
        "passed": passed,
        "run": {"seconds": started.elapsed().as_secs_f64(), "threads": args.threads, "seed": args.seed},
    });
    let mut summary = format!(
        "{}: suspect {} samples, reference {}\n  rank test: AUC {auc:.3}, z {:.2}, p = {:.3e} -> {}\n",
        config.model.id,
        s.len(),
        r.len(),
        rank.statistic,
        rank.p_value,
        if evidence { "EVIDENCE of membership" } else { "no evidence of membership" },
    );
    match calibrated {
        Some((t, f, fpr)) => {
            summary.push_str(&format!(
                "  binomial test: {flagged} of {n} flagged at {threshold} against FPR <= {:.4}: p = {:.3e}\n",
                fpr.high, t.p_value
            ));
            summary.push_str(&if f.estimate.is_nan() {
                "  member fraction: not identifiable (the head's calibrated TPR is within the FPR's reach)\n"
                    .to_string()
            } else {
                format!("  member fraction {:.3} [{:.3}, {:.3}] (95%)\n", f.estimate, f.low, f.high)
            });
        }
        None => summary.push_str(
            "  (uncalibrated head: no binomial test, no member fraction; calibrate with mint eval --calibrate)\n",
        ),
    }
    summary.push_str(&format!("  {}", power_line(&power)));
    summary.push_str(&format!("\n  {shift_message}"));

    std::fs::create_dir_all(&args.out_dir)?;
    std::fs::write(args.out_dir.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    let suite = format!("{} dataset test", config.model.id);
    let junit = report::junit(&suite, &checks, started.elapsed().as_secs_f64(), &summary);
    std::fs::write(args.out_dir.join("junit.xml"), junit)?;
    println!("{summary}");
    for c in &checks {
        println!("  [{}] {}", if c.passed { "pass" } else { "FAIL" }, c.name);
    }
    println!("reports in {}", args.out_dir.display());
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn load_sets(args: &Args, input: [usize; 3]) -> Result<(Images, Images, serde_json::Value)> {
    let (mut s, mut r, note) = match (&args.split, &args.suspect, &args.reference) {
        (Some(path), None, None) => {
            let name = args.protocol.as_deref().expect("required by clap");
            let (s, r, mut note) = Split::load(path)?.load_eval(name, input)?;
            note["split"] = json!(path);
            note["suspect"] = json!("eval members");
            note["reference"] = json!("eval non-members");
            (s, r, note)
        }
        (None, Some(s), Some(r)) => {
            (data::load(s, input)?, data::load(r, input)?, json!({"suspect": s, "reference": r}))
        }
        _ => bail!("give --suspect and --reference, or --split and --protocol"),
    };
    if let Some(limit) = args.suspect_limit {
        s = s.truncated(limit);
    }
    if let Some(limit) = args.reference_limit {
        r = r.truncated(limit);
    }
    ensure!(!s.is_empty() && !r.is_empty(), "both sets need samples");
    Ok((s, r, note))
}

fn power_line(power: &serde_json::Value) -> String {
    let row = power["rows"].as_array().and_then(|r| r.last()).cloned().unwrap_or_default();
    let n = |v: &serde_json::Value| v.as_f64().map_or("unreachable".to_string(), |x| format!("{x} samples"));
    format!(
        "power (p < {} in 95% of draws at this effect): rank test {} against this reference, {} against an equal one; binomial test {}",
        power["alpha"],
        n(&row["rank_with_this_reference"]),
        n(&row["rank_with_equal_reference"]),
        n(&row["binomial"])
    )
}
