//! The operator's signing key and the public keys verifiers trust.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// An ed25519 signing key, loaded from a PKCS#8 file.
pub struct OperatorKey {
    key: SigningKey,
}

/// Only the public half: a log line or a panic message never carries the secret.
impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OperatorKey({})", self.public().fingerprint())
    }
}

impl OperatorKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<OperatorKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))?;
        Ok(OperatorKey { key: SigningKey::from_bytes(&seed) })
    }

    /// Reads a PKCS#8 private key, PEM (`-----BEGIN PRIVATE KEY-----`) or DER.
    pub fn load(path: &Path) -> Result<OperatorKey> {
        let bytes = std::fs::read(path).with_context(|| format!("reading the signing key {}", path.display()))?;
        ensure!(bytes.len() <= 16 * 1024, "{}: {} bytes is no ed25519 key", path.display(), bytes.len());
        let key = match std::str::from_utf8(&bytes) {
            Ok(text) if text.contains("-----BEGIN") => SigningKey::from_pkcs8_pem(text),
            _ => SigningKey::from_pkcs8_der(&bytes),
        }
        .map_err(|e| anyhow::anyhow!("{}: not an ed25519 PKCS#8 private key ({e})", path.display()))?;
        Ok(OperatorKey { key })
    }

    /// Writes the key as PKCS#8 PEM, readable by its owner only, and never over an existing file.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let pem = self.key.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file =
            options.open(path).with_context(|| format!("creating {} (it must not exist)", path.display()))?;
        file.write_all(pem.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    pub fn public(&self) -> PublicKey {
        PublicKey { key: self.key.verifying_key() }
    }

    /// The signer dsse signs with: the raw 32-byte seed, the fingerprint as the envelope's key id.
    pub(crate) fn dsse_signer(&self) -> dsse::Ed25519Signer {
        dsse::Ed25519Signer::from_bytes(self.key.as_bytes())
            .expect("an ed25519 seed is 32 bytes")
            .with_key_id(self.public().fingerprint())
    }
}

/// An ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    /// Reads a public key: SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), or a
    /// private key's file, whose public half is taken.
    pub fn load(path: &Path) -> Result<PublicKey> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the key {}", path.display()))?;
        if text.contains("-----BEGIN PUBLIC KEY-----") {
            let key = VerifyingKey::from_public_key_pem(&text)
                .map_err(|e| anyhow::anyhow!("{}: not an ed25519 public key ({e})", path.display()))?;
            return Ok(PublicKey { key });
        }
        if text.contains("-----BEGIN PRIVATE KEY-----") {
            return Ok(OperatorKey::load(path)?.public());
        }
        bail!("{}: expected a PEM public key (-----BEGIN PUBLIC KEY-----)", path.display())
    }

    /// From the 64 hex digits of the raw key, as statements carry it.
    pub fn from_hex(hex: &str) -> Result<PublicKey> {
        let bytes = decode_hex(hex).context("a public key is 64 hex digits")?;
        let raw: [u8; 32] = bytes.try_into().map_err(|_| anyhow::anyhow!("a public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|e| anyhow::anyhow!("not an ed25519 public key: {e}"))?;
        Ok(PublicKey { key })
    }

    pub fn to_hex(&self) -> String {
        self.key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn to_pem(&self) -> String {
        self.key.to_public_key_pem(LineEnding::LF).expect("an ed25519 key encodes")
    }

    /// `sha256:` + hex of the sha256 of the 32 raw bytes: what an operator publishes.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{:x}", Sha256::digest(self.key.as_bytes()))
    }

    pub(crate) fn dsse_verifier(&self) -> dsse::Ed25519Verifier {
        dsse::Ed25519Verifier::from_bytes(self.key.as_bytes())
            .expect("a verifying key is 32 bytes")
            .with_key_id(self.fingerprint())
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || hex.len() > 1024 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_key_reads_back_with_its_public_half_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator.pem");
        let key = OperatorKey::generate().unwrap();
        key.save(&path).unwrap();
        assert_eq!(OperatorKey::load(&path).unwrap().public(), key.public());
        assert_eq!(PublicKey::load(&path).unwrap(), key.public());
        let public = dir.path().join("operator.pub");
        std::fs::write(&public, key.public().to_pem()).unwrap();
        assert_eq!(PublicKey::load(&public).unwrap(), key.public());
        assert_eq!(PublicKey::from_hex(&key.public().to_hex()).unwrap(), key.public());
        assert!(key.save(&path).is_err(), "an existing key file is kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(key.public().fingerprint().starts_with("sha256:") && key.public().fingerprint().len() == 71);
    }

    #[test]
    fn what_is_not_a_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.pem");
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let err = OperatorKey::load(&path).err().unwrap().to_string();
        assert!(err.contains("not an ed25519 PKCS#8 private key"), "{err}");
        assert!(PublicKey::from_hex("zz").is_err());
        assert!(PublicKey::from_hex(&"00".repeat(31)).is_err());
    }
}
