//! The reports `mint eval` and `mint dataset-test` write as `report.json` (schemas
//! docs/schemas/eval_report.schema.json and dataset_test_report.schema.json). Parts whose
//! shape belongs to another module (ROC figures, the power table, the data's provenance) are
//! kept as that module writes them.

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
