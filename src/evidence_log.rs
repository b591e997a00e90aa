//! The auditor's own signed evidence log (optional, off unless `evidence_log` is configured):
//! every `interval_seconds`, at creation and at close, a snapshot of every cohort's evidence is
//! appended to a file as an in-toto statement in a DSSE envelope, signed with the operator's
//! ed25519 key and chained to the one before (`mint_attest::chain`). A regulator who is handed
//! the file (or `mint verify` run on it) sees whether any snapshot was edited, removed or
//! reordered, and every alarm the replica ever raised stays in it.
//!
//! The snapshots are written on a thread of their own: the vendor's thread and the workers
//! never wait on the disk. A failed write is the vendor's to read (`last_worker_error`), and
//! the next snapshot tries again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use mint_attest::chain::{self, Link};
use mint_attest::{OperatorKey, Signer, Statement, Subject};
use serde::{Deserialize, Serialize};

use crate::config::EvidenceLogConfig;
use crate::delivery::Delivery;
use crate::error::{Error, Result};
use crate::evidence::CohortEvidence;
use crate::ledger::Stats;

/// The statements' predicate type.
pub const SNAPSHOT_PREDICATE_TYPE: &str = "https://mint-audit.dev/attestations/replica-evidence/v1";

/// One snapshot: the predicate of a statement whose subject is the served head (by sha256).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EvidenceSnapshot {
    /// When it was taken, `YYYY-MM-DDTHH:MM:SSZ` (UTC).
    pub issued_at: String,
    /// The audited model, as configured.
    pub model_id: String,
    /// Its version, as configured.
    pub model_version: String,
    /// The library's version.
    pub mint_version: String,
    /// Samples chosen for audit since the auditor was created.
    pub submitted: u64,
    /// Of those, scored.
    pub audited: u64,
    /// Of those, dropped (each with its reason in the metrics).
    pub dropped: u64,
    /// Every declared cohort, `default` first.
    pub cohorts: Vec<CohortSnapshot>,
    /// Whether this is the snapshot written at close (the replica's last word).
    pub last: bool,
    /// Its place in the log.
    pub chain: Link,
    /// The key that signed it.
    pub signer: Signer,
}

/// One cohort's evidence in a snapshot (docs/evidence.md says how to read each); a value that
/// cannot be computed (no calibration, no reference) is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CohortSnapshot {
    /// Its name.
    pub cohort: String,
    /// Samples scored.
    pub audited: u64,
    /// Of those, at or above the threshold.
    pub flagged: u64,
    /// The flag e-value now.
    pub e_value_flags: Option<f64>,
    /// The scores e-value now.
    pub e_value_scores: Option<f64>,
    /// The member share's 95% confidence sequence now.
    pub member_fraction: Option<[f64; 2]>,
    /// Fewer than this share were members (95%, anytime).
    pub certificate: Option<f64>,
    /// Fixed windows completed.
    pub windows: u64,
    /// Their alarms, binomial then rank.
    pub alarms: [u64; 2],
}

impl CohortSnapshot {
    fn of(cohort: &str, e: &CohortEvidence) -> CohortSnapshot {
        let finite = |x: f64| x.is_finite().then_some(x);
        let (low, high) = e.anytime.member_fraction;
        CohortSnapshot {
            cohort: cohort.to_string(),
            audited: e.audited,
            flagged: e.flagged,
            e_value_flags: finite(e.anytime.e_value[0]),
            e_value_scores: finite(e.anytime.e_value[1]),
            member_fraction: (low.is_finite() && high.is_finite()).then_some([low, high]),
            certificate: e.anytime.certificate,
            windows: e.windows,
            alarms: e.alarms,
        }
    }
}

/// What a snapshot reads from the auditor: its counters and each cohort's evidence.
pub(crate) type Reader = Box<dyn Fn() -> (Stats, Vec<CohortEvidence>) + Send>;

/// The writer thread, stopped (with a last snapshot) by [`EvidenceLog::stop`] or on drop.
pub(crate) struct EvidenceLog {
    stop: Mutex<Option<Sender<()>>>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

/// What every snapshot of one auditor shares.
struct Writer {
    path: PathBuf,
    key: OperatorKey,
    subject: Subject,
    model: (String, String),
    cohorts: Vec<String>,
    read: Reader,
}

impl Writer {
    fn append(&self, last: bool) -> anyhow::Result<Link> {
        let (stats, evidence) = (self.read)();
        chain::append(&self.path, &self.key, |link| {
            let snapshot = EvidenceSnapshot {
                issued_at: mint_attest::rfc3339(SystemTime::now()),
                model_id: self.model.0.clone(),
                model_version: self.model.1.clone(),
                mint_version: crate::VERSION.to_string(),
                submitted: stats.submitted,
                audited: stats.audited(),
                dropped: stats.dropped_total(),
                cohorts: self.cohorts.iter().zip(&evidence).map(|(name, e)| CohortSnapshot::of(name, e)).collect(),
                last,
                chain: link,
                signer: Signer::of(&self.key.public()),
            };
            Statement::new(vec![self.subject.clone()], SNAPSHOT_PREDICATE_TYPE, snapshot)
        })
    }
}

impl EvidenceLog {
    /// Loads the key and writes the first snapshot now, so that a key or a log that cannot
    /// be used fails the auditor's creation; then starts the writer.
    pub(crate) fn start(
        config: &EvidenceLogConfig,
        model: (String, String),
        head_sha256: &str,
        cohorts: Vec<String>,
        read: Reader,
        delivery: Arc<Delivery>,
    ) -> Result<EvidenceLog> {
        let key = OperatorKey::load(&config.signing_key)
            .map_err(|e| Error::config("evidence_log.signing_key", format!("{e:#}")))?;
        let subject = Subject::sha256(format!("{} {} head", model.0, model.1), head_sha256);
        let writer = Writer { path: config.path.clone(), key, subject, model, cohorts, read };
        writer
            .append(false)
            .map_err(|e| Error::config("evidence_log.path", format!("{}: {e:#}", config.path.display())))?;
        let (stop, stopped) = bounded::<()>(1);
        let interval = Duration::from_secs_f64(config.interval_seconds);
        let handle = std::thread::Builder::new()
            .name("mint-evidence-log".into())
            .spawn(move || loop {
                let last = match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => false,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                };
                if let Err(e) = writer.append(last) {
                    delivery.note_error(format!("evidence log {}: {e:#}", writer.path.display()));
                }
                if last {
                    return;
                }
            })
            .map_err(|e| Error::config("evidence_log", format!("cannot start its thread: {e}")))?;
        Ok(EvidenceLog { stop: Mutex::new(Some(stop)), handle: Mutex::new(Some(handle)) })
    }

    /// Writes the last snapshot and stops the writer; later calls do nothing.
    pub(crate) fn stop(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for EvidenceLog {
    fn drop(&mut self) {
        self.stop();
    }
}
