//! The in-toto Statement (v1) that every signed file of ours carries: what the evidence is
//! about (subjects, by digest), what kind of evidence it is (the predicate type), and the
//! evidence (the predicate).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::key::PublicKey;

/// The statement's `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// An in-toto Statement v1 with a predicate of type `P`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Statement<P> {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// What the evidence is about, by digest.
    pub subject: Vec<Subject>,
    /// A URI naming the predicate's format.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: P,
}

impl<P> Statement<P> {
    pub fn new(subject: Vec<Subject>, predicate_type: &str, predicate: P) -> Statement<P> {
        Statement { statement_type: STATEMENT_TYPE.into(), subject, predicate_type: predicate_type.into(), predicate }
    }
}

/// One artefact the statement is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Subject {
    pub name: String,
    /// Algorithm → hex digest (`sha256`).
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    pub fn sha256(name: impl Into<String>, hex: impl Into<String>) -> Subject {
        Subject { name: name.into(), digest: BTreeMap::from([("sha256".to_string(), hex.into())]) }
    }
}

/// Who signed, inside what is signed: a verifier names the key before deciding to trust it,
/// and a statement cannot be re-signed by another key without saying so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Signer {
    /// `ed25519`.
    pub algorithm: String,
    /// The raw 32-byte public key, hex.
    pub public_key: String,
    /// `sha256:` + hex of the sha256 of the raw public key.
    pub fingerprint: String,
}

impl Signer {
    pub fn of(key: &PublicKey) -> Signer {
        Signer { algorithm: "ed25519".into(), public_key: key.to_hex(), fingerprint: key.fingerprint() }
    }
}
