//! The toolkit's file formats, one Rust type per format, shared by the writer and the reader,
//! each with its JSON schema (docs/schemas/, generated from the types by [`schemas`] and
//! checked against them by a test: `MINT_BLESS=1 cargo test -p mint-toolkit schemas` rewrites
//! them after a deliberate change).
//!
//! | file | type | written by | read by |
//! |---|---|---|---|
//! | features sidecar | [`features::FeaturesSidecar`] | `mint extract` | `mint train` |
//! | training report | [`train_report::TrainReport`] | the training recipes, [`crate::train`] | `mint train`, auditors |
//! | split | [`crate::split::Split`] | `mint split` | `mint extract`, `mint eval` |
//! | conformance kit | [`crate::conformance::Kit`] | `mint conformance write` | `mint conformance check` |
//! | evidence bundle (signed) | [`bundle::Bundle`] in a DSSE envelope | the console | `mint verify-bundle`, `mint verify` |
//! | eval report | [`reports::EvalReport`] | `mint eval` | CI systems, `mint_toolkit::eval` |
//! | dataset-test report | [`reports::DatasetTestReport`] | `mint dataset-test` | CI systems, regulators |
//! | per-sample feature table (JSON Lines) | [`feature_table::FeatureRow`] per line | owners' tools, `research/mint_research/lm_dataset_inference.py` | `mint dataset-inference` |
//! | dataset-inference report | [`reports::DatasetInferenceReport`] | `mint dataset-inference` | CI systems, regulators |
//! | fleet evidence | [`fleet::FleetEvidence`] | `mint evidence` | regulators, CI systems |
//! | signed fleet evidence, its log | [`fleet::SignedFleetEvidence`] in DSSE envelopes | `mint evidence --attest[-log]` | `mint verify` |
//! | a replica's evidence log | `mint_audit::evidence_log::EvidenceSnapshot` in DSSE envelopes | the library (`evidence_log`) | `mint verify` |
//!
//! The calibration block of an auditor configuration (`mint_audit::config::Calibration`) and
//! the conformance recording (`mint_audit::Recording`) are the library's own types; their
//! schemas come from the library's `schema` feature, which the toolkit enables and the shipped
//! library does not.

pub mod bundle;
pub mod feature_table;
pub mod features;
pub mod fleet;
pub mod reports;
pub mod train_report;

/// Every format's schema, by the file name it has in docs/schemas/.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn of<T: schemars::JsonSchema>() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(T)).expect("a schema is JSON")
    }
    vec![
        ("features.schema.json", of::<features::FeaturesSidecar>()),
        ("train_report.schema.json", of::<train_report::TrainReport>()),
        ("split.schema.json", of::<crate::split::Split>()),
        ("conformance_kit.schema.json", of::<crate::conformance::Kit>()),
        ("evidence_bundle.schema.json", of::<bundle::Bundle>()),
        ("eval_report.schema.json", of::<reports::EvalReport>()),
        ("dataset_test_report.schema.json", of::<reports::DatasetTestReport>()),
        ("feature_table_row.schema.json", of::<feature_table::FeatureRow>()),
        ("dataset_inference_report.schema.json", of::<reports::DatasetInferenceReport>()),
        ("fleet_evidence.schema.json", of::<fleet::FleetEvidence>()),
        ("signed_fleet_evidence.schema.json", of::<fleet::SignedFleetEvidence>()),
        ("replica_evidence_snapshot.schema.json", of::<mint_audit::evidence_log::EvidenceSnapshot>()),
        ("calibration.schema.json", of::<mint_audit::config::Calibration>()),
        ("conformance_recording.schema.json", of::<mint_audit::Recording>()),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// The schemas in docs/ are the types' own: a change to a format that is not carried into
    /// its documented schema fails here.
    #[test]
    fn schemas_in_docs_are_generated_from_the_types() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas");
        let bless = std::env::var_os("MINT_BLESS").is_some();
        let mut stale = Vec::new();
        for (name, schema) in super::schemas() {
            let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            let path = dir.join(name);
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(name);
            }
        }
        assert!(
            stale.is_empty(),
            "docs/schemas/{stale:?} differ from the types: MINT_BLESS=1 cargo test -p mint-toolkit schemas"
        );
    }
}
