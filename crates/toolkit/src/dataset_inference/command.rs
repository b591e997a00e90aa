//! `mint dataset-inference`: one dataset inference on two feature tables, the rank test on a
//! head's score beside it, and, when asked, the power study with its null control.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use mint_audit::evidence::stats::{binomial_test, rank_test, ScoreBins};
use serde_json::json;

use super::recipe::infer;
use super::study::{study, texts_needed, Pools};
use crate::dataset_test::Expect;
use crate::formats::feature_table::FeatureTable;
use crate::formats::reports::{DatasetInferenceReport, FeatureRankTest, PowerRow, PowerStudy, TableRef};
use crate::report::{self, Check};

/// The power a study's "texts needed" asks for.
pub const TARGET_POWER: f64 = 0.8;
/// The level of the null control's check, shared among the study's sizes.
pub const NULL_CHECK_LEVEL: f64 = 0.05;

/// What to test.
#[derive(Debug, Clone)]
pub struct Options {
    /// The suspect texts' features.
    pub suspect: PathBuf,
    /// Known non-members of the same distribution.
    pub validation: PathBuf,
    /// The features to combine (default: every one the tables share).
    pub features: Option<Vec<String>>,
    /// A feature in [0, 1] (a head's score) for the rank test beside.
    pub rank_feature: Option<String>,
    pub alpha: f64,
    pub expect: Option<Expect>,
    pub seed: u64,
    /// The power study: known members, and the sizes and draws to try; the validation table is
    /// the non-member pool.
    pub study: Option<StudyOptions>,
}

#[derive(Debug, Clone)]
pub struct StudyOptions {
    pub members: PathBuf,
    pub sizes: Vec<usize>,
    pub draws: usize,
}

/// The outcome: the report and a summary for people.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: DatasetInferenceReport,
    pub summary: String,
    pub seconds: f64,
}

impl Outcome {
    /// Writes report.json and junit.xml into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&self.report)?)?;
        std::fs::write(
            dir.join("junit.xml"),
            report::junit("dataset inference", &self.report.checks, self.seconds, &self.summary),
        )?;
        Ok(())
    }
}

/// Reads the tables and runs the test (and the study).
pub fn run(args: &Options) -> Result<Outcome> {
    let started = Instant::now();
    ensure!(args.alpha > 0.0 && args.alpha < 0.5, "--alpha must lie in (0, 0.5)");
    let suspect = FeatureTable::read(&args.suspect)?;
    let validation = FeatureTable::read(&args.validation)?;
    // The features named, or all of the suspect table's; the other tables must have them.
    let names = args.features.clone().unwrap_or_else(|| suspect.names.clone());
    ensure!(!names.is_empty(), "no features to combine");
    let (s, v) = (suspect.rows_on(&names)?, validation.rows_on(&names)?);
    let inference = infer(&s, &v, &names, args.seed)?;
    let evidence = inference.p_value < args.alpha;

    let rank = match &args.rank_feature {
        Some(name) => {
            let one = [name.clone()];
            let (a, b) = (suspect.rows_on(&one)?.concat(), validation.rows_on(&one)?.concat());
            ensure!(
                a.iter().chain(&b).all(|x| (0.0..=1.0).contains(x)),
                "--rank-feature {name}: a score in [0, 1] (a head's) is needed"
            );
            let bins = |x: &[f64]| ScoreBins::from_scores(x.iter().map(|&s| s as f32));
            let (test, auc) = rank_test(&bins(&a), &bins(&b));
            Some(FeatureRankTest { z: test.statistic, p_value: test.p_value, auc })
        }
        None => None,
    };

    let power = match &args.study {
        Some(plan) => {
            let members = FeatureTable::read(&plan.members)?;
            let m = members.rows_on(&names)?;
            let rank_at = match &args.rank_feature {
                Some(name) => Some(names.iter().position(|x| x == name).with_context(|| {
                    format!("--rank-feature {name} must be among the combined features for the study")
                })?),
                None => None,
            };
            let pools = Pools { members: &m, non_members: &v };
            let rows = study(&pools, &names, rank_at, &plan.sizes, plan.draws, args.alpha, args.seed)?;
            Some(PowerStudy {
                members: TableRef { path: plan.members.display().to_string(), samples: members.len() },
                texts_needed: texts_needed(&rows, TARGET_POWER, |r| Some(r.inference)),
                texts_needed_rank_test: rank_at.and_then(|_| texts_needed(&rows, TARGET_POWER, |r| r.rank_test)),
                rows,
            })
        }
        None => None,
    };

    let mut checks = Vec::new();
    if let Some(expect) = args.expect {
        let (name, passed) = match expect {
            Expect::Evidence => (format!("the suspect set is found (dataset inference p < {})", args.alpha), evidence),
            Expect::NoEvidence => {
                (format!("the suspect set is not found (dataset inference p >= {})", args.alpha), !evidence)
            }
        };
        checks.push(Check { message: format!("p = {:.3e}", inference.p_value), name, passed });
    }
    if let Some(p) = &power {
        checks.push(null_check(&p.rows, args.alpha));
    }
    let passed = checks.iter().all(|c| c.passed);
    let mut summary = format!(
        "dataset inference on {} features: suspect {} texts, validation {}; fit on {} + {}, tested on {} + {}\n  \
         Welch t = {} (df {}), p = {:.3e}, held-out AUC {:.3} -> {}\n",
        names.len(),
        s.len(),
        v.len(),
        inference.fit.suspect,
        inference.fit.validation,
        inference.test.suspect,
        inference.test.validation,
        inference.t.map_or("-".into(), |t| format!("{t:.2}")),
        inference.df.map_or("-".into(), |d| format!("{d:.1}")),
        inference.p_value,
        inference.held_out_auc,
        if evidence { "EVIDENCE of membership" } else { "no evidence of membership" },
    );
    if let (Some(r), Some(name)) = (&rank, &args.rank_feature) {
        summary.push_str(&format!("  rank test on {name}: AUC {:.3}, z {:.2}, p = {:.3e}\n", r.auc, r.z, r.p_value));
    }
    if let Some(p) = &power {
        summary.push_str(&format!(
            "  power at alpha {} ({} draws per size; null control: two non-member sets):\n",
            args.alpha, p.rows[0].draws
        ));
        for r in &p.rows {
            let rank = r
                .rank_test
                .zip(r.rank_test_null)
                .map(|(a, b)| format!("; rank test {:.2}, null {:.3}", a.rate, b.rate))
                .unwrap_or_default();
            summary.push_str(&format!(
                "    {:>5} texts: dataset inference {:.2}, null {:.3}{rank}\n",
                r.n, r.inference.rate, r.inference_null.rate
            ));
        }
    }
    let report = DatasetInferenceReport {
        mint_version: mint_audit::VERSION.into(),
        method: "dataset inference (Maini et al. 2024): features clipped and standardised on half A, a logistic \
                 regression suspect vs validation fit on A, a one-sided Welch t-test on half B; assumes suspect and \
                 validation texts exchangeable under the null"
            .into(),
        suspect: TableRef { path: args.suspect.display().to_string(), samples: suspect.len() },
        validation: TableRef { path: args.validation.display().to_string(), samples: validation.len() },
        features: names,
        alpha: args.alpha,
        inference,
        evidence,
        rank_test: rank,
        rank_feature: args.rank_feature.clone(),
        power,
        checks,
        passed,
        run: json!({"seconds": started.elapsed().as_secs_f64(), "seed": args.seed}),
    };
    Ok(Outcome { report, summary, seconds: started.elapsed().as_secs_f64() })
}

/// The null control's check: at each size, are the false positives consistent with alpha? An
/// exact binomial test per size, Bonferroni over the sizes (the worst of several rates exceeds
/// alpha by chance more often than any one does).
fn null_check(rows: &[PowerRow], alpha: f64) -> Check {
    let threshold = NULL_CHECK_LEVEL / rows.len() as f64;
    let tested = rows.iter().map(|r| {
        let k = (r.inference_null.rate * r.draws as f64).round() as u64;
        (r, k, binomial_test(k, r.draws as u64, alpha).p_value)
    });
    let (worst, k, p_value) = tested.min_by(|a, b| a.2.total_cmp(&b.2)).expect("a size");
    Check {
        name: format!("null control: false positives consistent with alpha = {alpha} (two non-member sets)"),
        passed: p_value >= threshold,
        message: format!(
            "worst at {} texts: {k} of {} draws, binomial p = {p_value:.3} (fails below {threshold:.4}: {NULL_CHECK_LEVEL} \
             over {} sizes)",
            worst.n,
            worst.draws,
            rows.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::reports::Rate;

    fn row(n: usize, false_positives: usize) -> PowerRow {
        let rate = |k: usize| Rate { rate: k as f64 / 200.0, low: 0.0, high: 1.0 };
        PowerRow {
            n,
            draws: 200,
            inference: rate(200),
            inference_null: rate(false_positives),
            rank_test: None,
            rank_test_null: None,
        }
    }

    #[test]
    fn the_null_check_fails_on_too_many_false_positives_and_not_on_chance() {
        // 5 of 200 at alpha 0.01 happens by chance (P = 0.052) and passes, even as the worst of
        // seven sizes; 10 of 200 (P = 4e-5) fails.
        let sizes: Vec<PowerRow> = [10, 20, 50, 100, 200, 500, 1000].iter().map(|&n| row(n, 2)).collect();
        assert!(null_check(&sizes, 0.01).passed);
        let mut chance = sizes.clone();
        chance[4] = row(200, 5);
        assert!(null_check(&chance, 0.01).passed, "{}", null_check(&chance, 0.01).message);
        let mut too_many = sizes;
        too_many[2] = row(50, 10);
        let check = null_check(&too_many, 0.01);
        assert!(!check.passed && check.message.contains("worst at 50 texts: 10 of 200"), "{}", check.message);
    }
}
