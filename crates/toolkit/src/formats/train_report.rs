//! The training report `<head>.onnx.json`: written by the training recipes (Python), completed
//! by [`crate::train`] with the runtime check, read by `mint eval` and by auditors
//! (schema docs/schemas/train_report.schema.json).

use std::path::Path;

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Rows the recipe scored in PyTorch, for the runtime check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Reference {
    /// Vanilla heads: feature rows and PyTorch's scores.
    Rows { inputs: Vec<Vec<f32>>, scores: Vec<f32> },
    /// CNN heads: an NPY file of maps beside the report, and PyTorch's scores.
    Maps { maps: String, scores: Vec<f32> },
}

/// Members and non-members the head was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rows {
    pub members: usize,
    pub non_members: usize,
}

/// A head's training report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainReport {
    /// `standardized` or `paper`.
    pub recipe: String,
    pub seed: u64,
    pub rows: Rows,
    /// AUC of the head on its own training rows (optimistic by construction).
    pub training_auc: f64,
    pub reference: Reference,
    /// The taps the head reads (added after the runtime check).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taps: Vec<String>,
    /// sha256 of the ONNX head (added after the runtime check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Largest |runtime − PyTorch| over the reference rows (added after the runtime check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tract_max_abs_diff_vs_torch: Option<f32>,
    /// What the recipe adds of its own (epochs, validation AUC, standardisation, timings...).
    #[serde(flatten)]
    #[schemars(skip)]
    pub details: Map<String, Value>,
}

impl TrainReport {
    pub fn load(path: &Path) -> Result<TrainReport> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de)
            .map_err(|e| anyhow::anyhow!("{}: {}", e.path(), e.inner()))
            .with_context(|| format!("{}: not a training report", path.display()))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_recipes_report_reads_with_its_own_fields_kept() {
        let written = json!({"recipe": "standardized", "seed": 3, "features": 2,
            "rows": {"members": 5, "non_members": 6}, "training_auc": 0.75, "epochs": 40,
            "reference": {"inputs": [[1.0, 2.0]], "scores": [0.5]}});
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.onnx.json");
        std::fs::write(&path, written.to_string()).unwrap();
        let mut report = TrainReport::load(&path).unwrap();
        assert!(matches!(report.reference, Reference::Rows { .. }));
        assert_eq!(report.details["epochs"], json!(40));
        report.sha256 = Some("ab".into());
        report.write(&path).unwrap();
        let again: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!((again["epochs"].clone(), again["sha256"].clone()), (json!(40), json!("ab")));
        std::fs::write(&path, json!({"recipe": "x", "seed": 1}).to_string()).unwrap();
        let err = format!("{:#}", TrainReport::load(&path).unwrap_err());
        assert!(err.contains("not a training report") && err.contains("rows"), "{err}");
    }
}
