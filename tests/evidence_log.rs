//! The auditor's own signed evidence log: a snapshot at creation, every interval and at close,
//! chained and signed; the last one holds the final counts; what `mint_attest` verifies, an
//! edited or removed snapshot does not; a bad key fails the creation.

mod common;

use std::time::Duration;

use common::*;
use mint_attest::{chain, OperatorKey, Trust};
use mint_audit::evidence_log::{EvidenceSnapshot, SNAPSHOT_PREDICATE_TYPE};
use mint_audit::{Auditor, Config};

fn config_with_log(dir: &std::path::Path, interval: f64) -> Config {
    let mut c = shipped_config();
    c.as_object_mut().unwrap().remove("metrics");
    c["cohorts"] = serde_json::json!(["reference", "suspect"]);
    c["evidence_log"] =
        serde_json::json!({"path": "evidence.jsonl", "signing_key": "operator.pem", "interval_seconds": interval});
    Config::from_json(&c.to_string(), dir).unwrap()
}

#[test]
fn snapshots_are_signed_chained_and_the_last_one_holds_the_final_counts() {
    let dir = tempfile::tempdir().unwrap();
    let key = OperatorKey::generate().unwrap();
    key.save(&dir.path().join("operator.pem")).unwrap();
    let auditor = Auditor::new(config_with_log(dir.path(), 1.0)).unwrap();
    let suspect = auditor.cohort("suspect").unwrap();
    let data = synthetic_reduced(40, 3);
    auditor.submit_in(suspect, &(0..40).collect::<Vec<_>>(), &reduced_views(&data, 40)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let report = auditor.close(Duration::from_secs(30));
    assert!(auditor.last_worker_error().is_none(), "{:?}", auditor.last_worker_error());

    let path = dir.path().join("evidence.jsonl");
    let log = chain::verify(&path, &Trust::Key(key.public())).unwrap();
    assert!(log.entries.len() >= 3, "creation, at least one interval, close: {}", log.entries.len());
    let snapshots: Vec<EvidenceSnapshot> = log.entries.iter().map(|e| e.predicate().unwrap()).collect();
    assert!(log.entries.iter().all(|e| e.statement.predicate_type == SNAPSHOT_PREDICATE_TYPE));
    let (first, last) = (&snapshots[0], snapshots.last().unwrap());
    assert_eq!((first.submitted, first.last), (0, false));
    assert!(last.last && snapshots[..snapshots.len() - 1].iter().all(|s| !s.last));
    assert_eq!(
        (last.submitted, last.audited, last.dropped),
        (40, report.stats.audited(), report.stats.dropped_total())
    );
    let names: Vec<&str> = last.cohorts.iter().map(|c| c.cohort.as_str()).collect();
    assert_eq!(names, ["default", "reference", "suspect"]);
    assert_eq!(last.cohorts[2].audited, auditor.evidence(suspect).unwrap().audited);
    assert_eq!(log.entries[0].statement.subject[0].digest["sha256"].len(), 64, "the head, by sha256");

    // A second auditor with the same key extends the same log; another key may not.
    drop(auditor);
    let again = Auditor::new(config_with_log(dir.path(), 60.0)).unwrap();
    again.close(Duration::from_secs(10));
    let longer = chain::verify(&path, &Trust::Key(key.public())).unwrap();
    assert_eq!(longer.entries.len(), log.entries.len() + 2);
    assert_eq!(longer.log, log.log);
    std::fs::remove_file(dir.path().join("operator.pem")).unwrap();
    OperatorKey::generate().unwrap().save(&dir.path().join("operator.pem")).unwrap();
    let err = Auditor::new(config_with_log(dir.path(), 60.0)).err().unwrap().to_string();
    assert!(err.contains("evidence_log.path") && err.contains("does not verify under this key"), "{err}");

    // A removed snapshot is found.
    let lines: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(String::from).collect();
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, [&lines[..1], &lines[2..]].concat().join("\n") + "\n").unwrap();
    let err = format!("{:#}", chain::verify(&cut, &Trust::Key(key.public())).err().unwrap());
    assert!(err.contains("removed or reordered"), "{err}");
}

#[test]
fn a_key_that_cannot_be_read_or_a_bad_interval_fails_the_creation() {
    let dir = tempfile::tempdir().unwrap();
    let err = Auditor::new(config_with_log(dir.path(), 60.0)).err().unwrap().to_string();
    assert!(err.contains("evidence_log.signing_key"), "{err}");
    let mut c = shipped_config();
    c["evidence_log"] = serde_json::json!({"path": "e.jsonl", "signing_key": "k.pem", "interval_seconds": 0.1});
    let err = Config::from_json(&c.to_string(), dir.path()).and_then(Auditor::new).err().unwrap().to_string();
    assert!(err.contains("evidence_log.interval_seconds"), "{err}");
}
