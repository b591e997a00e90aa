//! The evidence bundle a data owner files with a regulator: written by the console, read by
//! `mint verify-bundle` (schema docs/schemas/evidence_bundle.schema.json).
//!
//! A bundle is `{"format", "issued_at", "evidence_sha256", "evidence", "verify_with"}`: the
//! evidence is what the console's analysis computed (model, head digest, calibration, library
//! version, each image's sha256 and score, the tests; no image), and its sha256 is over its
//! compact JSON. `issued_at` and `verify_with` are outside the digest.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{ensure, Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The value of `format`.
pub const BUNDLE_FORMAT: &str = "mint-evidence-bundle/1";

/// An evidence bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Bundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// When the console issued it, `YYYY-MM-DDTHH:MM:SSZ` (UTC).
    pub issued_at: String,
    /// sha256 (hex) of `evidence` as compact JSON.
    pub evidence_sha256: String,
    /// The analysis: model, head, calibration, reference, images with scores, tests, verdict.
    pub evidence: Value,
    /// How to check it, in words.
    #[serde(default)]
    pub verify_with: String,
}

impl Bundle {
    /// Seals `evidence` as issued at `issued_at`.
    pub fn new(evidence: Value, issued_at: SystemTime) -> Bundle {
        Bundle {
            format: BUNDLE_FORMAT.into(),
            issued_at: rfc3339(issued_at),
            evidence_sha256: digest(&evidence),
            evidence,
            verify_with: "mint verify-bundle --bundle THIS_FILE IMAGE_FILES...".into(),
        }
    }

    /// Reads a bundle and checks its format and that its evidence matches its digest.
    pub fn load(path: &Path) -> Result<Bundle> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        ensure!(value["format"] == BUNDLE_FORMAT, "{}: not a {BUNDLE_FORMAT} file", path.display());
        let bundle: Bundle = serde_path_to_error::deserialize(value)
            .map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()))?;
        ensure!(
            bundle.evidence_sha256 == digest(&bundle.evidence),
            "{}: evidence_sha256 does not match the evidence: the file was changed after it was issued",
            path.display()
        );
        Ok(bundle)
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a bundle is JSON")
    }
}

/// sha256 (hex) of a value's compact JSON.
pub fn digest(evidence: &Value) -> String {
    format!("{:x}", Sha256::digest(evidence.to_string().as_bytes()))
}

/// `YYYY-MM-DDTHH:MM:SSZ`, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_are_utc_civil_dates() {
        let at = |s: u64| rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_169_600 + 3_723), "2026-12-02T01:02:03Z");
    }

    #[test]
    fn a_bundle_reads_back_and_an_edited_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        let bundle = Bundle::new(json!({"model": {"id": "m"}, "images": [1, 2]}), SystemTime::UNIX_EPOCH);
        std::fs::write(&path, bundle.to_json().to_string()).unwrap();
        assert_eq!(Bundle::load(&path).unwrap(), bundle);
        let mut edited = bundle.to_json();
        edited["evidence"]["images"][1] = json!(3);
        std::fs::write(&path, edited.to_string()).unwrap();
        let err = Bundle::load(&path).unwrap_err().to_string();
        assert!(err.contains("changed after it was issued"), "{err}");
    }
}
