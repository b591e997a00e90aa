//! The features sidecar: what `mint extract` writes beside its NPY arrays and `mint train`
//! reads back (docs/formats.md, schema docs/schemas/features.schema.json). One type for the
//! writer and the reader, so the two cannot drift.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use mint_audit::config::TapKind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The value of `format`.
pub const FEATURES_FORMAT: &str = "mint-features";
/// The newest version this toolkit reads and the one it writes; a sidecar without `version`
/// reads as 1.
pub const FEATURES_VERSION: u64 = 1;

/// How each sample's record is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `[n, F]`: per-tap reductions side by side, described by `columns`.
    Vanilla,
    /// `[n, C, H, W]`: one tap's full maps, the input of CNN heads.
    FullMap,
}

/// What a column range holds: the tap kinds of an auditor configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    ActivationMap,
    Outcome,
    TokenSequence,
    TokenLogprobs,
    TokenLogits,
}

impl From<TapKind> for ColumnKind {
    fn from(kind: TapKind) -> ColumnKind {
        match kind {
            TapKind::ActivationMap => ColumnKind::ActivationMap,
            TapKind::Outcome => ColumnKind::Outcome,
            TapKind::TokenSequence => ColumnKind::TokenSequence,
            TapKind::TokenLogprobs => ColumnKind::TokenLogprobs,
            TapKind::TokenLogits => ColumnKind::TokenLogits,
        }
    }
}

/// One tap's columns, `[start, stop)` of a Vanilla record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub tap: String,
    pub kind: ColumnKind,
    pub start: usize,
    pub stop: usize,
}

/// The sidecar of a features file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeaturesSidecar {
    /// Always `"mint-features"` (absent reads as it).
    #[serde(default = "default_format")]
    pub format: String,
    /// Format version (absent reads as 1; newer than [`FEATURES_VERSION`] is refused).
    #[serde(default = "default_version")]
    pub version: u64,
    pub kind: Layout,
    /// Vanilla: one entry per tap, in order, contiguous from column 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<Column>,
    /// `[F]`, or `[C, H, W]` for full maps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record_shape: Vec<usize>,
    /// The taps' names, in order (full maps: the one tap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taps: Vec<String>,
    /// Informative: the audited model's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Informative: the outcome's column range `[start, stop]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_columns: Option<[usize; 2]>,
    /// Informative: samples per set written (`samples` for a single `--data` file).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, usize>,
    /// Informative: the SIMD kernel set that reduced the maps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce_isa: Option<String>,
}

fn default_format() -> String {
    FEATURES_FORMAT.to_string()
}

fn default_version() -> u64 {
    1
}

/// The columns of a Vanilla record that belong to the requested taps.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub taps: Vec<String>,
    /// Column ranges in the source record, in the order picked.
    pub ranges: Vec<(usize, usize)>,
    /// The outcome's columns in the picked record, when an outcome tap is picked.
    pub outcome: Option<(usize, usize)>,
}

impl Selection {
    /// Width of a picked record.
    pub fn width(&self) -> usize {
        self.ranges.iter().map(|(a, b)| b - a).sum()
    }
}

impl FeaturesSidecar {
    /// Reads and checks a sidecar; an error names the field and the file.
    pub fn load(path: &Path) -> Result<FeaturesSidecar> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading {}: the features' sidecar, which `mint extract` writes beside them; for features \
                 made elsewhere write one, e.g. {{\"format\": \"mint-features\", \"version\": 1, \"kind\": \"vanilla\", \
                 \"columns\": [{{\"tap\": \"stage1\", \"kind\": \"activation_map\", \"start\": 0, \"stop\": 64}}]}} \
                 (docs/formats.md)",
                path.display()
            )
        })?;
        Self::from_json(&text).with_context(|| format!("{} (the format: docs/formats.md)", path.display()))
    }

    /// Parses and checks a sidecar's text.
    pub fn from_json(text: &str) -> Result<FeaturesSidecar> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let sidecar: FeaturesSidecar = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("{path}: {}", e.into_inner())
        })?;
        sidecar.validate()?;
        Ok(sidecar)
    }

    /// What serde cannot say: the format's name, the version, contiguous columns, a map shape.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.format == FEATURES_FORMAT, "format: {:?} is not \"{FEATURES_FORMAT}\"", self.format);
        ensure!(
            self.version <= FEATURES_VERSION,
            "version: {} is newer than this mint reads ({FEATURES_VERSION})",
            self.version
        );
        match self.kind {
            Layout::Vanilla => {
                ensure!(!self.columns.is_empty(), "columns: empty");
                let mut next = 0;
                for (i, c) in self.columns.iter().enumerate() {
                    ensure!(
                        c.start == next && c.stop > c.start,
                        "columns[{i}]: [{}, {}) does not follow the previous column at {next}",
                        c.start,
                        c.stop
                    );
                    next = c.stop;
                }
            }
            Layout::FullMap => {
                ensure!(
                    self.record_shape.len() == 3 && self.record_shape.iter().all(|&d| d > 0),
                    "record_shape: {:?} is not [C, H, W]",
                    self.record_shape
                );
                ensure!(!self.taps.is_empty(), "taps: names no tap");
            }
        }
        Ok(())
    }

    /// Writes the sidecar (pretty JSON).
    pub fn write(&self, path: &Path) -> Result<()> {
        self.validate()?;
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The sidecar that belongs to an NPY file: `features.json` beside a split's
    /// `head_train_*.npy`, else the file's name with `.json`.
    pub fn path_for(npy: &Path) -> PathBuf {
        if npy.file_name().is_some_and(|n| n.to_string_lossy().starts_with("head_train_")) {
            npy.with_file_name("features.json")
        } else {
            npy.with_extension("json")
        }
    }

    /// The columns of the taps named in `taps` (comma-separated, or `all`), in that order.
    pub fn select(&self, taps: &str) -> Result<Selection> {
        if self.kind != Layout::Vanilla {
            bail!("these are not Vanilla features (kind {:?})", self.kind);
        }
        let wanted: Vec<String> = if taps == "all" {
            self.columns.iter().map(|c| c.tap.clone()).collect()
        } else {
            taps.split(',').map(|s| s.trim().to_string()).collect()
        };
        let mut sel = Selection { taps: Vec::new(), ranges: Vec::new(), outcome: None };
        let mut width = 0;
        for name in wanted {
            let c = self.columns.iter().find(|c| c.tap == name).with_context(|| {
                let have: Vec<&str> = self.columns.iter().map(|c| c.tap.as_str()).collect();
                format!("tap '{name}' was not extracted (have: {})", have.join(", "))
            })?;
            if c.kind == ColumnKind::Outcome {
                sel.outcome = Some((width, width + c.stop - c.start));
            }
            width += c.stop - c.start;
            sel.ranges.push((c.start, c.stop));
            sel.taps.push(name);
        }
        Ok(sel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn check(v: &Value) -> Result<FeaturesSidecar> {
        FeaturesSidecar::from_json(&v.to_string())
    }

    #[test]
    fn a_sidecar_for_features_made_elsewhere_is_checked_field_by_field() {
        let good = json!({"format": "mint-features", "version": 1, "kind": "vanilla",
            "columns": [{"tap": "a", "kind": "activation_map", "start": 0, "stop": 4},
                        {"tap": "o", "kind": "outcome", "start": 4, "stop": 14}]});
        check(&good).unwrap();
        // The minimal one docs/formats.md shows, without format and version (version 1).
        let least = check(
            &json!({"kind": "vanilla", "columns": [{"tap": "t", "kind": "activation_map", "start": 0, "stop": 64}]}),
        )
        .unwrap();
        assert_eq!((least.format.as_str(), least.version), (FEATURES_FORMAT, 1));
        let refused = |edit: &dyn Fn(&mut Value), field: &str| {
            let mut bad = good.clone();
            edit(&mut bad);
            let err = format!("{:#}", check(&bad).unwrap_err());
            assert!(err.starts_with(field), "expected {field}: {err}");
        };
        refused(&|v| v["format"] = json!("npy"), "format");
        refused(&|v| v["version"] = json!(2), "version");
        refused(&|v| v["kind"] = json!("cnn"), "kind");
        refused(&|v| v["columns"][1]["kind"] = json!("logits"), "columns[1].kind");
        refused(&|v| v["columns"][1]["start"] = json!(5), "columns[1]");
        refused(&|v| v["columns"][0]["tap"] = json!(3), "columns[0].tap");
        refused(&|v| v["columns"] = json!([]), "columns");
        let err = format!("{:#}", FeaturesSidecar::load(Path::new("/nonexistent/features.json")).unwrap_err());
        assert!(err.contains("/nonexistent/features.json") && err.contains("docs/formats.md"), "{err}");
    }

    #[test]
    fn what_is_written_reads_back_equal_and_selects_by_tap() {
        let written = FeaturesSidecar {
            format: FEATURES_FORMAT.into(),
            version: FEATURES_VERSION,
            kind: Layout::Vanilla,
            columns: vec![
                Column { tap: "a".into(), kind: ColumnKind::ActivationMap, start: 0, stop: 4 },
                Column { tap: "o".into(), kind: ColumnKind::Outcome, start: 4, stop: 14 },
            ],
            record_shape: vec![14],
            taps: vec!["a".into(), "o".into()],
            model: Some("m".into()),
            outcome_columns: Some([4, 14]),
            counts: [("samples".to_string(), 3)].into(),
            reduce_isa: Some("avx2".into()),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        written.write(&path).unwrap();
        assert_eq!(FeaturesSidecar::load(&path).unwrap(), written);
        let sel = written.select("o,a").unwrap();
        assert_eq!(sel.ranges, vec![(4, 14), (0, 4)]);
        assert_eq!((sel.outcome, sel.width()), (Some((0, 10)), 14));
        let err = written.select("b").unwrap_err().to_string();
        assert!(err.contains("'b' was not extracted (have: a, o)"), "{err}");
    }
}
