//! `mint verify`: checks a signed statement of ours (an evidence bundle, a signed fleet report,
//! a replica's evidence snapshot) or a log of them against the key the verifier trusts: the signature, and for a log the
//! chain (no entry edited, removed or reordered). `mint verify-bundle` also recomputes a
//! bundle's evidence from its images.
//!
//! Exit codes: 0 verified, 1 not verified (signature, chain or expectation), 2 on error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use mint_audit::evidence_log::{EvidenceSnapshot, SNAPSHOT_PREDICATE_TYPE};
use mint_toolkit::attest::{self, chain, Opened, PublicKey, Trust};
use mint_toolkit::formats::bundle::{Bundle, BUNDLE_PREDICATE_TYPE};
use mint_toolkit::formats::fleet::{SignedFleetEvidence, SIGNED_FLEET_PREDICATE_TYPE};

/// The key a verifier trusts: one of the two is required.
#[derive(clap::Args)]
pub struct TrustArgs {
    /// The signer's public key (PEM), as the operator gave it.
    #[arg(long, conflicts_with = "fingerprint")]
    key: Option<PathBuf>,
    /// The signer's fingerprint (sha256:…), as the console's page or the operator publishes it.
    #[arg(long)]
    fingerprint: Option<String>,
}

impl TrustArgs {
    pub fn trust(&self, file: &Path) -> Result<Trust> {
        match (&self.key, &self.fingerprint) {
            (Some(path), _) => Ok(Trust::Key(PublicKey::load(path)?)),
            (None, Some(fingerprint)) => Ok(Trust::Fingerprint(fingerprint.trim().to_string())),
            (None, None) => {
                // Name the signer so the user knows whom to ask, without trusting it.
                let named = first_entry(file)
                    .and_then(|envelope| attest::open(&envelope, &Trust::Unpinned))
                    .map(|opened| format!(" (it says it is signed by {})", opened.signer.fingerprint()))
                    .unwrap_or_default();
                bail!(
                    "give the key you trust: --key PUBLIC.pem or --fingerprint sha256:…{named}; a signature by an \
                     unknown key proves nothing about who issued the file"
                )
            }
        }
    }
}

/// The file's envelope (one JSON document, pretty-printed or not), or a log's first entry.
fn first_entry(file: &Path) -> Result<dsse::Envelope> {
    attest::envelope::read(file).or_else(|_| {
        let text = std::fs::read_to_string(file)?;
        attest::envelope::parse(text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().as_bytes())
    })
}

#[derive(clap::Args)]
/// Verify a signed evidence file: a console's bundle, a signed fleet report, or a log of them (signature and chain).
pub struct Args {
    /// The file: one DSSE envelope (JSON), or a log (one envelope per line).
    file: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
    /// Fail unless a log holds at least this many entries: the count seen at an earlier look,
    /// so that entries removed from its end are detected.
    #[arg(long)]
    expect_entries: Option<u64>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let trust = args.trust.trust(&args.file)?;
    // One JSON document is one statement (a log of one entry included); anything else is
    // walked as a log, one envelope per line.
    let single = attest::envelope::read(&args.file).ok().map(|envelope| attest::open(&envelope, &trust));
    if let Some(opened) = single {
        let opened = match opened {
            Ok(opened) => opened,
            Err(e) => return not_verified(&args.file, &e),
        };
        if !chain::is_entry(&opened.statement) {
            if let Err(e) = describe(&opened) {
                return not_verified(&args.file, &e);
            }
            println!("verified: {} is signed by {}", args.file.display(), opened.signer.fingerprint());
            return expectation(args.expect_entries, None);
        }
    }
    match chain::verify(&args.file, &trust) {
        Ok(log) => {
            for opened in &log.entries {
                if let Err(e) = describe(opened) {
                    return not_verified(&args.file, &e);
                }
            }
            println!(
                "verified: log {} holds {} entries in order (sequence 0 to {}), every one signed by {}",
                log.log,
                log.entries.len(),
                log.entries.len() - 1,
                log.entries[0].signer.fingerprint()
            );
            expectation(args.expect_entries, Some(log.entries.len() as u64))
        }
        Err(e) => not_verified(&args.file, &e),
    }
}

/// One line on what a statement says; an error when its predicate is not what its type says.
fn describe(opened: &Opened) -> Result<()> {
    match opened.statement.predicate_type.as_str() {
        BUNDLE_PREDICATE_TYPE => {
            let bundle = Bundle::from_opened(opened)?;
            println!(
                "  evidence bundle issued {} on model {}: {} files, verdict {}",
                bundle.issued_at,
                bundle.evidence["model"]["id"].as_str().unwrap_or("?"),
                opened.statement.subject.len(),
                bundle.evidence["verdict"]["outcome"]
            );
        }
        SIGNED_FLEET_PREDICATE_TYPE => {
            let signed: SignedFleetEvidence = opened.predicate()?;
            let at = signed.chain.as_ref().map(|c| format!(" #{}", c.sequence)).unwrap_or_default();
            println!(
                "  fleet report{at} issued {}: {} replicas, {} cohorts, discoveries [{}]",
                signed.issued_at,
                signed.report.replicas,
                signed.report.cohorts.len(),
                signed.report.discoveries.join(", ")
            );
        }
        SNAPSHOT_PREDICATE_TYPE => {
            let snapshot: EvidenceSnapshot = opened.predicate()?;
            let alarms: u64 = snapshot.cohorts.iter().map(|c| c.alarms.iter().sum::<u64>()).sum();
            println!(
                "  replica snapshot #{} issued {}{}: {} audited, {} dropped, {} cohorts, {alarms} window alarms",
                snapshot.chain.sequence,
                snapshot.issued_at,
                if snapshot.last { " (at close)" } else { "" },
                snapshot.audited,
                snapshot.dropped,
                snapshot.cohorts.len()
            );
        }
        other => println!("  a statement of type {other}"),
    }
    Ok(())
}

fn not_verified(file: &Path, why: &anyhow::Error) -> Result<ExitCode> {
    println!("NOT verified: {}: {why:#}", file.display());
    Ok(ExitCode::from(1))
}

fn expectation(expect: Option<u64>, entries: Option<u64>) -> Result<ExitCode> {
    match (expect, entries) {
        (Some(want), Some(have)) if have < want => {
            println!(
                "NOT verified: the log holds {have} entries, fewer than the {want} expected: its newest were removed"
            );
            Ok(ExitCode::from(1))
        }
        (Some(_), None) => bail!("--expect-entries applies to a log, and this file is one statement"),
        _ => Ok(ExitCode::SUCCESS),
    }
}
