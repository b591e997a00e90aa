//! The evidence bundle a data owner files with a regulator: issued by the console, checked by
//! `mint verify-bundle` (schema of the predicate: docs/schemas/evidence_bundle.schema.json).
//!
//! The file is an in-toto Statement in a DSSE envelope signed by the console's key
//! ([`mint_attest`]): its subjects are the uploaded files by sha256, its predicate a
//! [`Bundle`]: the evidence the console's analysis computed (model, head digest,
//! calibration, library version, each image's sha256 and score, the tests; no image), when it
//! was issued and by which key. Every field is under the signature, so a backdated or edited
//! bundle is refused.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{ensure, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use mint_attest::{self as attest, Opened, OperatorKey, Signer, Statement, Subject, Trust};

/// The value of `format`.
pub const BUNDLE_FORMAT: &str = "mint-evidence-bundle/2";
/// The statement's predicate type.
pub const BUNDLE_PREDICATE_TYPE: &str = "https://mint-audit.dev/attestations/evidence-bundle/v2";

/// An evidence bundle: the predicate of the signed statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// When the console issued it, `YYYY-MM-DDTHH:MM:SSZ` (UTC).
    pub issued_at: String,
    /// sha256 (hex) of `evidence` as compact JSON: a short name for the evidence.
    pub evidence_sha256: String,
    /// The analysis: model, head, calibration, reference, images with scores, tests, verdict.
    pub evidence: Value,
    /// How to check it, in words.
    pub verify_with: String,
    /// The console's key.
    pub signer: Signer,
}

impl Bundle {
    /// Issues `evidence` as of `issued_at`, signed with `key`.
    pub fn issue(evidence: Value, issued_at: SystemTime, key: &OperatorKey) -> Result<dsse::Envelope> {
        let bundle = Bundle {
            format: BUNDLE_FORMAT.into(),
            issued_at: rfc3339(issued_at),
            evidence_sha256: digest(&evidence),
            verify_with: format!(
                "mint verify-bundle --bundle THIS_FILE --fingerprint {} IMAGE_FILES...",
                key.public().fingerprint()
            ),
            signer: Signer::of(&key.public()),
            evidence,
        };
        attest::seal(&Statement::new(subjects(&bundle.evidence), BUNDLE_PREDICATE_TYPE, &bundle), key)
    }

    /// Reads a bundle, verifies its signature under `trust` and its consistency: the evidence
    /// matches its digest and the statement's subjects are the evidence's files.
    pub fn load(path: &Path, trust: &Trust) -> Result<(Bundle, Opened)> {
        let opened = attest::open(&attest::envelope::read(path)?, trust)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
        let bundle = Bundle::from_opened(&opened).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
        Ok((bundle, opened))
    }

    /// The bundle of a verified statement.
    pub fn from_opened(opened: &Opened) -> Result<Bundle> {
        ensure!(
            opened.statement.predicate_type == BUNDLE_PREDICATE_TYPE,
            "a {} statement, not an evidence bundle",
            opened.statement.predicate_type
        );
        let bundle: Bundle = opened.predicate()?;
        ensure!(bundle.format == BUNDLE_FORMAT, "format '{}' is not {BUNDLE_FORMAT}", bundle.format);
        ensure!(bundle.evidence_sha256 == digest(&bundle.evidence), "evidence_sha256 does not match the evidence");
        ensure!(
            opened.statement.subject == subjects(&bundle.evidence),
            "the statement's subjects are not the evidence's files"
        );
        Ok(bundle)
    }
}

/// The distinct files of the evidence, as the statement's subjects.
fn subjects(evidence: &Value) -> Vec<Subject> {
    let images = evidence["images"].as_array().map(Vec::as_slice).unwrap_or_default();
    images
        .iter()
        .filter(|image| image["index"].as_u64().unwrap_or(0) == 0)
        .map(|image| {
            Subject::sha256(image["file"].as_str().unwrap_or_default(), image["sha256"].as_str().unwrap_or_default())
        })
        .collect()
}

/// sha256 (hex) of a value's compact JSON.
pub fn digest(evidence: &Value) -> String {
    format!("{:x}", Sha256::digest(evidence.to_string().as_bytes()))
}

pub use mint_attest::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::json;

    fn evidence() -> Value {
        json!({"model": {"id": "m"}, "images": [
            {"file": "a.png", "sha256": "aa", "index": 0, "score": 0.5},
            {"file": "b.idx", "sha256": "bb", "index": 0, "score": 0.1},
            {"file": "b.idx", "sha256": "bb", "index": 1, "score": 0.2}]})
    }

    /// A bundle with its signed statement changed by `edit` and re-encoded, signature kept.
    fn tampered(envelope: &dsse::Envelope, edit: impl FnOnce(&mut Value)) -> dsse::Envelope {
        let engine = base64::engine::general_purpose::STANDARD;
        let mut statement: Value = serde_json::from_slice(&engine.decode(&envelope.payload).unwrap()).unwrap();
        edit(&mut statement);
        dsse::Envelope { payload: engine.encode(statement.to_string()), ..envelope.clone() }
    }

    #[test]
    fn a_bundle_verifies_and_a_backdated_or_edited_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        let key = OperatorKey::generate().unwrap();
        let trust = Trust::Fingerprint(key.public().fingerprint());
        let envelope = Bundle::issue(evidence(), SystemTime::UNIX_EPOCH, &key).unwrap();
        std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
        let (bundle, opened) = Bundle::load(&path, &trust).unwrap();
        assert_eq!(bundle.evidence, evidence());
        assert_eq!(bundle.issued_at, "1970-01-01T00:00:00Z");
        assert_eq!(opened.statement.subject, vec![Subject::sha256("a.png", "aa"), Subject::sha256("b.idx", "bb")]);

        type Edit = Box<dyn FnOnce(&mut Value)>;
        let edits: [(&str, Edit); 4] = [
            ("backdated", Box::new(|s| s["predicate"]["issued_at"] = json!("1969-01-01T00:00:00Z"))),
            ("score", Box::new(|s| s["predicate"]["evidence"]["images"][0]["score"] = json!(0.9))),
            ("extra field", Box::new(|s| s["predicate"]["note"] = json!("added"))),
            ("subject", Box::new(|s| s["subject"][0]["name"] = json!("c.png"))),
        ];
        for (what, edit) in edits {
            std::fs::write(&path, serde_json::to_vec(&tampered(&envelope, edit)).unwrap()).unwrap();
            let err = format!("{:#}", Bundle::load(&path, &trust).unwrap_err());
            assert!(err.contains("does not verify"), "{what}: {err}");
        }
        // Re-issued by another key: refused under the console's fingerprint.
        let forged = Bundle::issue(evidence(), SystemTime::now(), &OperatorKey::generate().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_vec(&forged).unwrap()).unwrap();
        let err = format!("{:#}", Bundle::load(&path, &trust).unwrap_err());
        assert!(err.contains("not by the trusted key"), "{err}");
    }
}
