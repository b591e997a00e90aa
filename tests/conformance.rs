//! Conformance recording: with `conformance.record` configured, the auditor writes at close the
//! records its head received and the scores it gave, for `mint conformance check`.

mod common;

use std::time::Duration;

use common::*;
use mint_audit::{Auditor, Config, ErrorKind};
use serde_json::{json, Value};

fn config_recording_to(path: &std::path::Path, max_samples: usize) -> Config {
    let mut config = shipped_config();
    config["conformance"] = json!({"record": path, "max_samples": max_samples});
    config.as_object_mut().unwrap().remove("metrics");
    Config::from_json(&config.to_string(), &repo()).unwrap()
}

#[test]
fn the_recording_holds_what_the_head_received_and_scored_up_to_its_bound() {
    let dir = repo().join("target/test-scratch/library-conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("received.json");
    let _ = std::fs::remove_file(&path);
    let scores = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let sink = std::sync::Arc::clone(&scores);
    let auditor = Auditor::with_sink(
        config_recording_to(&path, 6),
        std::sync::Arc::new(move |results: &[mint_audit::AuditResult]| {
            let mut s = sink.lock().unwrap();
            for r in results {
                s.insert(r.sample_id, r.score);
            }
        }),
    )
    .unwrap();
    let data = synthetic_reduced(8, 7);
    auditor.submit(&(0..8).collect::<Vec<u64>>(), &reduced_views(&data, 8)).unwrap();
    // Sample 2 again: flagged as repeated, its first record kept.
    let again = synthetic_reduced(1, 99);
    auditor.submit(&[2], &reduced_views(&again, 1)).unwrap();
    auditor.close(Duration::from_secs(30));

    let rec: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(rec["format"], mint_audit::RECORDING_FORMAT);
    assert_eq!(rec["width"], 250);
    assert_eq!(rec["layout"][1], json!({"tap": "stage2", "kind": "activation_map", "offset": 16, "width": 32}));
    let samples = rec["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 6, "max_samples bounds the recording");
    assert_eq!(rec["not_kept"], 2);
    let scores = scores.lock().unwrap();
    for s in samples {
        let id = s["id"].as_u64().unwrap() as usize;
        // The record is the taps' values concatenated in the head's order.
        let record: Vec<f32> = serde_json::from_value(s["record"].clone()).unwrap();
        let mut offset = 0;
        for (t, c) in SHIPPED_CHANNELS.iter().enumerate() {
            assert_eq!(&record[offset..offset + c], &data[t][id * c..(id + 1) * c], "sample {id}, tap {t}");
            offset += c;
        }
        assert_eq!(s["score"].as_f64().unwrap() as f32, scores[&(id as u64)], "sample {id}");
        assert_eq!(s["repeated"], id == 2);
    }
}

#[test]
fn a_bad_recording_setting_is_refused_and_an_unwritable_file_is_reported() {
    let mut config = shipped_config();
    config["conformance"] = json!({"record": "x.json", "max_samples": 0});
    let err = Config::from_json(&config.to_string(), &repo()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("conformance.max_samples"), "{err}");

    let auditor = Auditor::new(config_recording_to(std::path::Path::new("/nonexistent/dir/received.json"), 4)).unwrap();
    let data = synthetic_reduced(2, 1);
    auditor.submit(&[0, 1], &reduced_views(&data, 2)).unwrap();
    auditor.close(Duration::from_secs(30));
    let error = auditor.last_worker_error().unwrap_or_default();
    assert!(error.contains("writing the conformance recording") && error.contains("/nonexistent/dir"), "{error}");
}
