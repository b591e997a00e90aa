//! The conformance kit (format [`KIT_FORMAT`]): golden inputs, the records and scores the
//! head must receive and give, and how to compare them. `mint conformance write` makes one,
//! `mint conformance check` reads it beside the library's recording
//! ([`mint_audit::Recording`]); one type for both.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use mint_audit::RecordingPart;
use serde::{Deserialize, Serialize};

/// The format of `kit.json`.
pub const KIT_FORMAT: &str = "mint-conformance-kit/1";

/// `kit.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kit {
    /// [`KIT_FORMAT`].
    pub format: String,
    /// The toolkit that made it.
    pub mint_version: String,
    /// The audited model the kit is for.
    pub model: KitModel,
    /// The head whose scores the kit expects.
    pub head: KitHead,
    /// Samples in the kit, ids 0..samples.
    pub samples: usize,
    /// The inputs to feed.
    pub inputs: KitInputs,
    /// What the head must receive and give.
    pub expected: KitExpected,
    /// Where each tap's values sit in a record.
    pub layout: Vec<RecordingPart>,
    /// How close a vendor's records and scores must be.
    #[serde(default)]
    pub tolerance: Tolerance,
    /// The steps a vendor's CI takes, in words.
    #[serde(default)]
    pub how: Vec<String>,
    /// What the kit was made from.
    pub source: KitSource,
}

/// The audited model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KitModel {
    /// `model.id`.
    pub id: String,
    /// `model.version`.
    pub version: String,
    /// `[C, H, W]` of one input.
    pub input_shape: [usize; 3],
}

/// The head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KitHead {
    /// `vanilla` or `cnn`.
    pub kind: String,
    /// The head file's sha256.
    pub sha256: String,
    /// The threshold of its verdicts.
    pub threshold: f32,
}

/// The inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KitInputs {
    /// The model's input tensor, float32 `[N, C, H, W]` (NPY), relative to the kit.
    pub file: String,
    /// What `file` holds, in words.
    pub what: String,
    /// The same inputs as IDX bytes, when they are pixels / 255.
    pub images: Option<String>,
    /// The preprocessing from pixels to `file`, as the model's notes say.
    pub preprocessing: Option<String>,
}

/// What the head must receive and give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KitExpected {
    /// `[N, width]` float32 records (NPY), relative to the kit.
    pub records: String,
    /// `[N]` float32 scores (NPY), relative to the kit.
    pub scores: String,
    /// Values in one record.
    pub width: usize,
}

/// How close is close enough: a record value `r` against the expected `e` when
/// `|r - e| <= record_abs + record_rel * |e|`, a score within `score_abs`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Relative part of a record value's tolerance.
    pub record_rel: f64,
    /// Absolute part of a record value's tolerance.
    pub record_abs: f64,
    /// A score's tolerance.
    pub score_abs: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { record_rel: 1e-3, record_abs: 1e-4, score_abs: 1e-3 }
    }
}

/// What the kit was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KitSource {
    /// The auditor configuration.
    pub config: PathBuf,
    /// The data its inputs were drawn from.
    pub data: PathBuf,
}

impl Kit {
    /// Reads `kit.json`, naming a bad field by its path.
    pub fn load(path: &Path) -> Result<Kit> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        ensure!(value["format"] == KIT_FORMAT, "{}: not a {KIT_FORMAT} file", path.display());
        serde_path_to_error::deserialize(value)
            .map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()))
    }

    /// Writes it as `kit.json` in `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join("kit.json");
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kit_reads_back_as_written_and_a_bad_field_is_named() {
        let kit = Kit {
            format: KIT_FORMAT.into(),
            mint_version: "0".into(),
            model: KitModel { id: "m".into(), version: "1".into(), input_shape: [1, 28, 28] },
            head: KitHead { kind: "vanilla".into(), sha256: "ab".into(), threshold: 0.5 },
            samples: 2,
            inputs: KitInputs { file: "inputs.npy".into(), what: "x".into(), images: None, preprocessing: None },
            expected: KitExpected { records: "r.npy".into(), scores: "s.npy".into(), width: 3 },
            layout: vec![RecordingPart { tap: "t".into(), kind: "outcome".into(), offset: 0, width: 3, chw: None }],
            tolerance: Tolerance::default(),
            how: vec![],
            source: KitSource { config: "c.json".into(), data: "d".into() },
        };
        let dir = tempfile::tempdir().unwrap();
        kit.write(dir.path()).unwrap();
        assert_eq!(Kit::load(&dir.path().join("kit.json")).unwrap(), kit);
        let mut bad = serde_json::to_value(&kit).unwrap();
        bad["expected"]["width"] = "three".into();
        std::fs::write(dir.path().join("kit.json"), bad.to_string()).unwrap();
        let e = Kit::load(&dir.path().join("kit.json")).unwrap_err().to_string();
        assert!(e.contains("expected.width"), "{e}");
        // An older kit that wrote "chw": null for feature taps still reads.
        let mut old = serde_json::to_value(&kit).unwrap();
        old["layout"][0]["chw"] = serde_json::Value::Null;
        std::fs::write(dir.path().join("kit.json"), old.to_string()).unwrap();
        assert_eq!(Kit::load(&dir.path().join("kit.json")).unwrap(), kit);
    }
}
