//! Sealing a statement in a DSSE envelope and opening one: verify first, then read the bytes
//! the signature covered, never the envelope again.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::key::{OperatorKey, PublicKey};
use super::statement::{Signer, Statement, PAYLOAD_TYPE, STATEMENT_TYPE};

/// The largest envelope read from a file: a bundle of 200 images is ~100 KiB, a fleet report
/// of 1,024 cohorts a few MiB.
pub const MAX_ENVELOPE_BYTES: u64 = 64 << 20;

/// Which key a verifier trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// This public key.
    Key(PublicKey),
    /// The key with this fingerprint (`sha256:…`, as the operator publishes it).
    Fingerprint(String),
    /// Whatever key the statement names: integrity since signing, not who signed. For
    /// showing a file's signer, never for accepting it.
    Unpinned,
}

/// A statement whose signature verified.
#[derive(Debug, Clone)]
pub struct Opened {
    pub statement: Statement<Value>,
    /// The key that signed (the statement's own signer, checked against the signature).
    pub signer: PublicKey,
    /// Whether `signer` is the key the verifier trusts (false under [`Trust::Unpinned`]).
    pub trusted: bool,
    /// sha256 (hex) of the signed payload: what a chained successor names.
    pub payload_sha256: String,
}

impl Opened {
    /// The predicate as its type, with errors that name the field.
    pub fn predicate<P: DeserializeOwned>(&self) -> Result<P> {
        serde_path_to_error::deserialize(self.statement.predicate.clone())
            .map_err(|e| anyhow::anyhow!("predicate.{}: {}", e.path(), e.inner()))
    }
}

/// Signs `statement` (whose predicate must carry `signer` = this key's [`Signer`]).
pub fn seal<P: Serialize>(statement: &Statement<P>, key: &OperatorKey) -> Result<dsse::Envelope> {
    let payload = serde_json::to_vec(statement).context("encoding the statement")?;
    dsse::sign(PAYLOAD_TYPE, &payload, &key.dsse_signer()).map_err(|e| anyhow::anyhow!("signing: {e}"))
}

/// Reads an envelope from a file, within [`MAX_ENVELOPE_BYTES`].
pub fn read(path: &Path) -> Result<dsse::Envelope> {
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    ensure!(size <= MAX_ENVELOPE_BYTES, "{}: {size} bytes is more than a signed statement may be", path.display());
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes).with_context(|| path.display().to_string())
}

/// Parses one envelope's JSON.
pub fn parse(bytes: &[u8]) -> Result<dsse::Envelope> {
    let value: Value = serde_json::from_slice(bytes).context("not JSON")?;
    ensure!(
        value.get("payloadType").is_some() && value.get("signatures").is_some(),
        "not a signed statement (a DSSE envelope with payload, payloadType and signatures){}",
        if value.get("evidence_sha256").is_some() {
            ": an unsigned bundle of an earlier console, which a verifier can no longer trust"
        } else {
            ""
        }
    );
    dsse::Envelope::from_json(bytes).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Verifies `envelope` against `trust` and returns the statement it signed.
pub fn open(envelope: &dsse::Envelope, trust: &Trust) -> Result<Opened> {
    ensure!(
        envelope.payload_type == PAYLOAD_TYPE,
        "payload type '{}' is not an in-toto statement ({PAYLOAD_TYPE})",
        envelope.payload_type
    );
    // The key to check with: the trusted one, or the one the (still unverified) statement names.
    let named = named_signer(envelope)?;
    let key = match trust {
        Trust::Key(key) => *key,
        Trust::Fingerprint(fingerprint) => {
            ensure!(
                named.fingerprint() == *fingerprint,
                "signed by {}, not by the trusted key {fingerprint}",
                named.fingerprint()
            );
            named
        }
        Trust::Unpinned => named,
    };
    let verified = dsse::verify(envelope, &[&key.dsse_verifier()], 1).map_err(|e| match e {
        dsse::Error::NoValidSignature { .. } => anyhow::anyhow!(
            "the signature does not verify with {}: the file was changed after it was signed, or another key signed it",
            key.fingerprint()
        ),
        e => anyhow::anyhow!("the envelope does not verify: {e}"),
    })?;
    let statement: Statement<Value> =
        serde_json::from_slice(&verified.payload).context("the signed payload is not an in-toto statement")?;
    ensure!(
        statement.statement_type == STATEMENT_TYPE,
        "statement type '{}' is not {STATEMENT_TYPE}",
        statement.statement_type
    );
    let signer: Signer = serde_json::from_value(statement.predicate["signer"].clone())
        .context("the statement does not name its signer (predicate.signer)")?;
    ensure!(
        signer == Signer::of(&key),
        "the statement names {} as its signer but {} signed it",
        signer.fingerprint,
        key.fingerprint()
    );
    Ok(Opened {
        statement,
        signer: key,
        trusted: !matches!(trust, Trust::Unpinned),
        payload_sha256: format!("{:x}", Sha256::digest(&verified.payload)),
    })
}

/// The signer an envelope's payload names, read before any trust is placed in it.
fn named_signer(envelope: &dsse::Envelope) -> Result<PublicKey> {
    let payload =
        base64::engine::general_purpose::STANDARD.decode(&envelope.payload).context("the payload is not base64")?;
    let value: Value = serde_json::from_slice(&payload).context("the payload is not JSON")?;
    match value["predicate"]["signer"]["public_key"].as_str() {
        Some(hex) => PublicKey::from_hex(hex).context("predicate.signer.public_key"),
        None => bail!("the statement does not name its signer (predicate.signer.public_key)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::Subject;
    use serde_json::json;

    fn signed(key: &OperatorKey, body: Value) -> dsse::Envelope {
        let predicate = json!({"signer": Signer::of(&key.public()), "body": body});
        seal(&Statement::new(vec![Subject::sha256("x", "00")], "https://example/t", predicate), key).unwrap()
    }

    #[test]
    fn a_sealed_statement_opens_under_its_key_its_fingerprint_and_unpinned() {
        let key = OperatorKey::generate().unwrap();
        let envelope = signed(&key, json!(1));
        for trust in [Trust::Key(key.public()), Trust::Fingerprint(key.public().fingerprint()), Trust::Unpinned] {
            let opened = open(&envelope, &trust).unwrap();
            assert_eq!(opened.statement.predicate["body"], json!(1));
            assert_eq!(opened.trusted, !matches!(trust, Trust::Unpinned));
        }
    }

    #[test]
    fn an_edited_payload_a_wrong_key_or_a_resigned_statement_is_refused() {
        let key = OperatorKey::generate().unwrap();
        let other = OperatorKey::generate().unwrap();
        let envelope = signed(&key, json!(1));

        // Edited: the body changed, the signature kept.
        let engine = base64::engine::general_purpose::STANDARD;
        let mut statement: Value = serde_json::from_slice(&engine.decode(&envelope.payload).unwrap()).unwrap();
        statement["predicate"]["body"] = json!(2);
        let edited = dsse::Envelope { payload: engine.encode(statement.to_string()), ..envelope.clone() };
        let err = open(&edited, &Trust::Key(key.public())).unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");

        // Another key trusted.
        let err = open(&envelope, &Trust::Key(other.public())).unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");
        let err = open(&envelope, &Trust::Fingerprint(other.public().fingerprint())).unwrap_err().to_string();
        assert!(err.contains("not by the trusted key"), "{err}");

        // Re-signed by another key that keeps the first key's name inside.
        let forged = seal(&serde_json::from_value::<Statement<Value>>(statement).unwrap(), &other).unwrap();
        let err = open(&forged, &Trust::Unpinned).unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");
        let err = open(&forged, &Trust::Key(other.public())).unwrap_err().to_string();
        assert!(err.contains("names") && err.contains("as its signer"), "{err}");
    }

    #[test]
    fn an_unsigned_bundle_is_named_as_such() {
        let err = parse(br#"{"format": "mint-evidence-bundle/1", "evidence_sha256": "00"}"#).unwrap_err();
        assert!(err.to_string().contains("unsigned bundle"), "{err}");
    }
}
