//! Signed, tamper-evident evidence: what the console and the fleet command issue is an in-toto
//! Statement (v1) in a DSSE envelope, signed with the operator's ed25519 key.
//!
//! - [`key`]: the operator's key (PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes)
//!   and the public keys a verifier trusts, named by their fingerprint
//!   (`sha256:` + hex of the 32-byte public key).
//! - [`statement`]: the in-toto Statement: the subjects the evidence is about (images, a
//!   fleet) by digest, a predicate type, and the predicate, which carries the signer's public
//!   key so that a verifier can say which key signed before it decides to trust it.
//! - [`envelope`]: sealing a statement in a DSSE envelope (the signature covers
//!   `PAE(payloadType, payload)`, so every byte of the statement) and opening one against a
//!   trusted key.
//! - [`chain`]: a log of sealed statements, each naming its sequence number and the sha256 of
//!   the one before, so that an edited, reordered or deleted entry is detected.
//!
//! What a signature proves: the holder of the key issued these exact bytes. It does not prove
//! the key is the operator's: a verifier pins the key it trusts (`--key` or `--fingerprint`),
//! taken from the operator through another channel (the console's page, a regulator's file).

pub mod chain;
pub mod envelope;
pub mod key;
pub mod statement;
mod time;

pub use envelope::{open, seal, Opened, Trust};
pub use key::{OperatorKey, PublicKey};
pub use statement::{Signer, Statement, Subject};
pub use time::rfc3339;
