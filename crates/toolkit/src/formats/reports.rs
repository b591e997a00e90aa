//! The reports `mint eval` and `mint dataset-test` write as `report.json` (schemas
//! docs/schemas/eval_report.schema.json and dataset_test_report.schema.json). Parts whose
//! shape belongs to another module (ROC figures, the power table, the data's provenance) are
//! kept as that module writes them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::report::Check;
use crate::roc::{Estimate, Figures};

/// The audited model a report is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelRef {
    pub id: String,
    pub version: String,
    /// The ONNX file evaluated, and its sha256 (eval reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The head a report is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeadRef {
    /// `vanilla` or `cnn`.
    pub kind: String,
    /// sha256 of the head file.
    pub sha256: String,
    /// The decision threshold used.
    pub threshold: f64,
    /// The taps it reads (eval reports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taps: Vec<String>,
    /// Whether the configuration carries a calibration block (dataset-test reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated: Option<bool>,
}

/// A rate with its 95% interval; `null` where it is not identifiable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RateInterval {
    pub estimate: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// The distribution-shift control: a blind classifier on the raw inputs alone. Its AUC is a
/// number (dataset test) or an estimate with its interval (eval).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Shift<Auc = f64> {
    pub blind_auc: Auc,
    /// The AUC from which the sets are taken to differ in distribution.
    pub threshold: f64,
    pub detected: bool,
    pub message: String,
}

/// A set's size and how many of it the head flagged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SetCount {
    pub samples: usize,
    pub flagged: u64,
}

/// The Mann-Whitney rank test of suspect against reference scores (one-sided).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RankTest {
    pub z: f64,
    pub p_value: f64,
    pub auc: f64,
    pub cliffs_delta: f64,
}

/// The binomial test of the suspect's flags against the calibrated FPR's upper bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BinomialTest {
    pub p_value: f64,
    pub z: f64,
    pub null_fpr: f64,
}

/// `mint dataset-test`'s report.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetTestReport {
    pub mint_version: String,
    pub model: ModelRef,
    pub head: HeadRef,
    /// Where the sets came from (a split and protocol, or two files).
    pub data: Value,
    pub suspect: SetCount,
    pub reference: SetCount,
    pub alpha: f64,
    pub rank_test: RankTest,
    /// With a calibrated configuration only.
    pub binomial_test: Option<BinomialTest>,
    /// With a calibrated configuration only.
    pub member_fraction: Option<RateInterval>,
    /// Whether the rank test's p-value is below `alpha`.
    pub evidence: bool,
    /// Suspect samples needed for p < alpha at the effect seen (`mint_toolkit::power`).
    pub power: Value,
    pub distribution_shift: Shift,
    pub checks: Vec<Check>,
    pub passed: bool,
    /// seconds, threads, seed.
    pub run: Value,
}

// Dataset inference (`mint_toolkit::dataset_inference`).

/// How many texts of each set took part.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sizes {
    pub suspect: usize,
    pub validation: usize,
}

/// One dataset inference's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Inference {
    /// One-sided p-value of Welch's t-test on B: small when the suspect half scores higher.
    pub p_value: f64,
    /// Welch's t statistic and its Welch–Satterthwaite degrees of freedom (`null` when
    /// neither half's scores vary: every feature was constant on A).
    pub t: Option<f64>,
    pub df: Option<f64>,
    /// The halves that fit the linear model (A) and that test it (B).
    pub fit: Sizes,
    pub test: Sizes,
    /// The AUC of B's suspect scores against B's validation scores (0.5: no difference), an
    /// effect size to read beside the p-value.
    pub held_out_auc: f64,
    /// The linear model's weight per feature, on A's standardised scale (which features the
    /// fit leant on; a feature constant on A has weight 0).
    pub weights: BTreeMap<String, f64>,
}

/// A rate over draws, with Wilson's 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rate {
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// One row of the power study: how often each test finds a set of `n` texts at `alpha`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PowerRow {
    /// Texts in the suspect set, and as many in the validation set.
    pub n: usize,
    pub draws: usize,
    /// Dataset inference, suspect = members: its power.
    pub inference: Rate,
    /// Dataset inference, suspect and validation both non-members: its false-positive rate,
    /// which must stay at or below alpha.
    pub inference_null: Rate,
    /// The rank test on one feature (a head's score) over the whole sets, as the library's
    /// cohort evidence runs it, when a feature is named: its power and false-positive rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_test: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_test_null: Option<Rate>,
}

/// A feature table a report read: its path and how many rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TableRef {
    pub path: String,
    pub samples: usize,
}

/// The rank test on one feature (a head's score) over the whole sets, beside dataset inference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeatureRankTest {
    pub z: f64,
    pub p_value: f64,
    pub auc: f64,
}

/// The power study of `mint dataset-inference --members`: resampled from known members and
/// the validation table's non-members (`mint_toolkit::dataset_inference::study`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PowerStudy {
    pub members: TableRef,
    pub rows: Vec<PowerRow>,
    /// The fewest texts per set with power ≥ 0.8 at `alpha`, for each test (`null`: none of
    /// the sizes tried).
    pub texts_needed: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texts_needed_rank_test: Option<usize>,
}

/// `mint dataset-inference`'s report.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetInferenceReport {
    pub mint_version: String,
    /// The recipe, in words, with its assumptions' short form.
    pub method: String,
    pub suspect: TableRef,
    pub validation: TableRef,
    /// The features combined, in the order of the weights.
    pub features: Vec<String>,
    pub alpha: f64,
    pub inference: Inference,
    /// Whether dataset inference's p-value is below `alpha`.
    pub evidence: bool,
    /// With `--rank-feature`: the rank test on that feature, suspect against validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_test: Option<FeatureRankTest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_feature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerStudy>,
    pub checks: Vec<Check>,
    pub passed: bool,
    /// seconds, seed.
    pub run: Value,
}

/// `mint eval`'s report.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvalReport {
    pub mint_version: String,
    pub model: ModelRef,
    pub head: HeadRef,
    /// Where the sets came from (a split and protocol, or two files).
    pub data: Value,
    /// The head's figures: AUC, TPR at low FPR, balanced accuracy, each with its interval.
    pub mint: Figures,
    /// `blind`, `confidence` and `loss`: figures, or `{"skipped": why}`.
    pub baselines: serde_json::Map<String, Value>,
    /// With `--calibrate`: the configuration's calibration block and its check.
    pub calibration: Option<Value>,
    pub distribution_shift: Shift<Estimate>,
    pub checks: Vec<Check>,
    pub passed: bool,
    /// rounds, seed.
    pub bootstrap: Value,
    /// seconds, threads, reduce_isa.
    pub run: Value,
}

/// Reads a report of type `T` from JSON, naming a bad field by its path.
pub fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()))
}
