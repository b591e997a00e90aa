//! The dataset test (`mint dataset-test`): was a suspect dataset in the training set? Scores a suspect set and a
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
//! The report is [`DatasetTestReport`] (schema docs/schemas/dataset_test_report.schema.json).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Result};
use mint_audit::evidence::stats::{self, Interval, ScoreBins};
use mint_audit::Config;
use serde_json::json;

use crate::blind;
use crate::data::{self, Images};
use crate::descriptor::Descriptor;
use crate::formats::reports::{
    BinomialTest, DatasetTestReport, HeadRef, ModelRef, RankTest, RateInterval, SetCount, Shift,
};
use crate::power::{finite, power_table};
use crate::report::{self, Check};
use crate::roc;
use crate::score::score_sets;
use crate::split::Split;

/// What the caller expects of the suspect set; a run whose outcome differs fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The suspect set must be found (a regulator's control on a known-member set).
    Evidence,
    /// The suspect set must not be found (a vendor's gate: held-out data stays undetectable).
    NoEvidence,
}

/// Where the suspect and reference sets come from.
#[derive(Debug, Clone)]
pub enum Sets {
    /// A split's eval members (suspect) and eval non-members (reference) of `protocol`.
    Split { path: PathBuf, protocol: String },
    /// Two sources (IDX, NPY or image folders).
    Files { suspect: PathBuf, reference: PathBuf },
}

/// A dataset test to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The auditor configuration (with `model.onnx`, `model.input_shape` and tap `tensor`s).
    pub config: PathBuf,
    pub sets: Sets,
    /// Use at most this many suspect samples.
    pub suspect_limit: Option<usize>,
    /// Use at most this many reference samples.
    pub reference_limit: Option<usize>,
    /// Significance level of the decision (the rank test's p-value below it is evidence).
    pub alpha: f64,
    pub expect: Option<Expect>,
    /// Blind-baseline AUC from which the sets are taken to differ in distribution.
    pub shift_auc: f64,
    /// Report a distribution shift as a warning instead of failing the run.
    pub allow_shift: bool,
    pub seed: u64,
    pub threads: usize,
    pub batch: usize,
}

/// A dataset test's outcome: the report, the checks it passed or failed, and a summary for
/// people.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: DatasetTestReport,
    pub summary: String,
    /// The model's id, for the JUnit suite's name.
    pub model: String,
    pub seconds: f64,
}

impl Outcome {
    /// Writes report.json and junit.xml into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&self.report)?)?;
        let suite = format!("{} dataset test", self.model);
        std::fs::write(dir.join("junit.xml"), report::junit(&suite, &self.report.checks, self.seconds, &self.summary))?;
        Ok(())
    }
}

/// Scores both sets through the library's runtime and tests them.
pub fn run(args: &Options) -> Result<Outcome> {
    let started = Instant::now();
    ensure!(args.alpha > 0.0 && args.alpha < 0.5, "--alpha must lie in (0, 0.5)");
    let config = Config::from_path(&args.config)?;
    let desc = Descriptor::from_config(&config)?;
    let (suspect, reference, data_note) = load_sets(args, desc.input_shape())?;
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

    let interval =
        |i: Interval| RateInterval { estimate: finite(i.estimate), low: finite(i.low), high: finite(i.high) };
    let report = DatasetTestReport {
        mint_version: mint_audit::VERSION.into(),
        model: ModelRef {
            id: config.model.id.clone(),
            version: config.model.version.clone(),
            onnx: None,
            sha256: None,
        },
        head: HeadRef {
            kind: config.head.kind().into(),
            sha256: scored.head_sha256.clone(),
            threshold: threshold.into(),
            taps: Vec::new(),
            calibrated: Some(config.calibration().is_some()),
        },
        data: data_note,
        suspect: SetCount { samples: s.len(), flagged },
        reference: SetCount { samples: r.len(), flagged: reference_flagged },
        alpha: args.alpha,
        rank_test: RankTest { z: rank.statistic, p_value: rank.p_value, auc, cliffs_delta: 2.0 * auc - 1.0 },
        binomial_test: calibrated.map(|(t, _, fpr)| BinomialTest {
            p_value: t.p_value,
            z: t.statistic,
            null_fpr: fpr.high,
        }),
        member_fraction: calibrated.map(|(_, f, _)| interval(f)),
        evidence,
        power: power.clone(),
        distribution_shift: Shift {
            blind_auc,
            threshold: args.shift_auc,
            detected: shift,
            message: shift_message.clone(),
        },
        checks,
        passed,
        run: json!({"seconds": started.elapsed().as_secs_f64(), "threads": args.threads, "seed": args.seed}),
    };
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
            summary.push_str(&member_fraction_line(f));
        }
        None => summary.push_str(
            "  (uncalibrated head: no binomial test, no member fraction; calibrate with mint eval --calibrate)\n",
        ),
    }
    summary.push_str(&format!("  {}", power_line(&power)));
    summary.push_str(&format!("\n  {shift_message}"));

    let model = config.model.id.clone();
    Ok(Outcome { report, summary, model, seconds: started.elapsed().as_secs_f64() })
}

/// The member fraction for people: never an estimate without its interval, and "not
/// identifiable" where nothing can be said (no separation, or an interval of [0, 1]).
fn member_fraction_line(f: mint_audit::evidence::stats::Interval) -> String {
    if f.estimate.is_nan() {
        "  member fraction: not identifiable (the head's calibrated TPR is within the FPR's reach)\n".to_string()
    } else if f.low <= 0.0 && f.high >= 1.0 {
        "  member fraction: not identifiable from these samples (95% interval [0, 1])\n".to_string()
    } else {
        format!("  member fraction {:.3} [{:.3}, {:.3}] (95%)\n", f.estimate, f.low, f.high)
    }
}

fn load_sets(args: &Options, input: [usize; 3]) -> Result<(Images, Images, serde_json::Value)> {
    let (mut s, mut r, note) = match &args.sets {
        Sets::Split { path, protocol } => {
            let (s, r, mut note) = Split::load(path)?.load_eval(protocol, input)?;
            note["split"] = json!(path);
            note["suspect"] = json!("eval members");
            note["reference"] = json!("eval non-members");
            (s, r, note)
        }
        Sets::Files { suspect, reference } => (
            data::load(suspect, input)?,
            data::load(reference, input)?,
            json!({"suspect": suspect, "reference": reference}),
        ),
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

pub fn power_line(power: &serde_json::Value) -> String {
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

#[cfg(test)]
mod tests {
    use super::member_fraction_line;
    use mint_audit::evidence::stats::Interval;

    #[test]
    fn the_member_fraction_is_never_a_bare_estimate() {
        let line = |estimate, low, high| member_fraction_line(Interval { estimate, low, high });
        assert_eq!(line(0.3, 0.1, 0.5), "  member fraction 0.300 [0.100, 0.500] (95%)\n");
        assert!(line(0.5, 0.0, 1.0).contains("not identifiable from these samples"));
        assert!(line(f64::NAN, f64::NAN, f64::NAN).contains("not identifiable (the head's"));
    }
}
