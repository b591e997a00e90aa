//! The shipped models and head, run by the library, against PyTorch's own numbers.

mod common;

use common::*;
use mint_audit::config::{ScoreOutput, TapKind};
use mint_audit::{Auditor, Error, FeatureExtractor, Runtime, TappedModel};
use mint_head::HeadModel;

#[test]
fn shipped_head_scores_equal_the_exporters_within_1e_5() {
    let dir = repo().join("models/fmnist-memorizing");
    let config = shipped_auditor_config();
    let sha = match &config.head {
        mint_audit::config::HeadConfig::Vanilla { sha256, .. } => sha256.clone(),
        _ => unreachable!(),
    };
    let head = HeadModel::load(&dir.join("head.onnx"), Some(&sha), &[250], ScoreOutput::Probability).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("head.onnx.json")).unwrap()).unwrap();
    let rows: Vec<Vec<f32>> = serde_json::from_value(report["reference"]["inputs"].clone()).unwrap();
    let expected: Vec<f32> = serde_json::from_value(report["reference"]["scores"].clone()).unwrap();
    assert!(rows.len() >= 8);
    let input: Vec<f32> = rows.concat();
    let mut scores = Vec::new();
    // Every batch size gives the same scores (one compiled plan, symbolic batch axis).
    let mut runner = head.runner().unwrap();
    runner.score(&input, rows.len(), &mut scores).unwrap();
    for (row, &e) in rows.iter().zip(&expected) {
        let mut one = Vec::new();
        runner.score(row, 1, &mut one).unwrap();
        assert!((one[0] - e).abs() <= 1e-5, "batch of 1: {} vs PyTorch {e}", one[0]);
    }
    for (s, e) in scores.iter().zip(&expected) {
        assert!((s - e).abs() <= 1e-5, "tract {s} vs PyTorch {e}");
    }
}

#[test]
fn a_head_whose_digest_differs_is_refused_naming_the_file() {
    let mut config = shipped_auditor_config();
    if let mint_audit::config::HeadConfig::Vanilla { sha256, .. } = &mut config.head {
        *sha256 = "ab".repeat(32);
    }
    let err = Auditor::new(config).err().expect("must refuse");
    assert!(matches!(err, Error::HeadDigestMismatch { .. }));
    let message = err.to_string();
    assert!(message.contains("models/fmnist-memorizing/head.onnx"), "{message}");
    assert!(message.contains(&"ab".repeat(32)) && message.contains("refusing to start"), "{message}");
}

#[test]
fn a_head_that_does_not_fit_the_taps_is_refused() {
    let path = repo().join("models/fmnist-memorizing/head.onnx");
    let err = HeadModel::load(&path, None, &[249], ScoreOutput::Probability).unwrap_err();
    let err = mint_audit::Error::from(err);
    assert_eq!(err.kind(), mint_audit::ErrorKind::HeadLoad);
    assert!(err.to_string().contains("[N, 249]"), "{err}");
}

/// Tapping and reducing in the library gives PyTorch's per-channel maxima, for both models.
#[test]
fn extraction_equals_pytorchs_channel_maxima() {
    extraction_matches_pytorch(&Runtime::Tract);
}

/// The same through onnxruntime, loaded from the venv's onnxruntime wheel (scripts/setup.sh).
#[cfg(feature = "onnxruntime")]
#[test]
fn onnxruntime_extraction_equals_pytorchs_channel_maxima() {
    extraction_matches_pytorch(&Runtime::Onnxruntime { library: venv_onnxruntime() });
}

/// libonnxruntime.so from the onnxruntime wheel in .venv.
#[cfg(feature = "onnxruntime")]
fn venv_onnxruntime() -> std::path::PathBuf {
    Runtime::onnxruntime_in_venv(&repo().join(".venv"))
        .expect("no onnxruntime/capi/libonnxruntime.so.* in .venv: run scripts/setup.sh")
}

/// A model onnxruntime cannot find a tap in, or a library that is not there, is refused
/// with an error naming them.
#[cfg(feature = "onnxruntime")]
#[test]
fn onnxruntime_refuses_unknown_taps_and_missing_libraries() {
    let onnx = repo().join("models/fmnist-memorizing/model.onnx");
    let runtime = Runtime::Onnxruntime { library: venv_onnxruntime() };
    let err = TappedModel::load_with(&onnx, &["no_such_tensor"], &[1, 28, 28], &runtime).err().unwrap();
    assert!(err.to_string().contains("no tensor or node is named 'no_such_tensor'"), "{err}");
    let missing = Runtime::Onnxruntime { library: repo().join("target/no-libonnxruntime.so") };
    let err = TappedModel::load_with(&onnx, &["logits"], &[1, 28, 28], &missing).err().unwrap();
    assert!(err.to_string().contains("no-libonnxruntime.so"), "{err}");
}

fn extraction_matches_pytorch(runtime: &Runtime) {
    for model in ["fmnist-memorizing", "fmnist-generalizing", "fmnist-vit"] {
        let dir = repo().join("models").join(model);
        let descriptor: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
        let taps: Vec<mint_audit::config::TapConfig> = serde_json::from_value(descriptor["taps"].clone()).unwrap();
        let tensors: Vec<&str> = taps.iter().map(|t| t.tensor.as_deref().unwrap()).collect();
        let tapped = TappedModel::load_with(&dir.join("model.onnx"), &tensors, &[1, 28, 28], runtime).unwrap();
        let (shape, inputs) = read_npy(&dir.join("reference/inputs.npy"));
        let (_, expected) = read_npy(&dir.join("reference/features.npy"));
        let (_, logits) = read_npy(&dir.join("reference/logits.npy"));
        let n = shape[0];
        let extractor = FeatureExtractor::vanilla(taps.clone(), &(0..taps.len()).collect::<Vec<_>>());
        let mut runner = tapped.runner().unwrap();
        // tract runs sample by sample unless pinned to whole batches: both give PyTorch's
        // features, and each is deterministic from run to run.
        let mut last: Option<Vec<f32>> = None;
        for round in 0..4 {
            if round == 2 {
                runner.pin_strategy(false);
            }
            runner.run(&inputs, n).unwrap();
            let mut features = Vec::new();
            assert!(extractor.extract(&runner.views().unwrap(), &mut features).unwrap().is_empty());
            assert_eq!(features.len(), expected.len());
            let worst =
                features.iter().zip(&expected).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0, f32::max);
            assert!(worst < 1e-4, "{model}, round {round} ({}): relative difference {worst}", runner.strategy());
            if round % 2 == 1 {
                assert_eq!(
                    last.as_ref(),
                    Some(&features),
                    "{model}: {} runs differ from run to run",
                    runner.strategy()
                );
            }
            last = Some(features);
            // The model's own output comes back too.
            let out = runner.model_output().unwrap();
            let worst = out.iter().zip(&logits).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-4, "{model}, round {round}: logits differ by {worst}");
        }
        assert_eq!(runner.strategy(), "batched", "{model}: pinned to whole batches");
        let default = if matches!(runtime, Runtime::Tract) { "per-sample" } else { "batched" };
        assert_eq!(tapped.runner().unwrap().strategy(), default, "{model}: a new runner's way");
        // One sample at a time gives the same as in a batch.
        let per = inputs.len() / n;
        runner.run(&inputs[per..2 * per], 1).unwrap();
        let mut one = Vec::new();
        assert!(extractor.extract(&runner.views().unwrap(), &mut one).unwrap().is_empty());
        let worst =
            one.iter().zip(&expected[one.len()..]).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0, f32::max);
        assert!(worst < 1e-4, "{model}, one sample: relative difference {worst}");
        assert_eq!(taps.last().unwrap().kind, TapKind::Outcome);
    }
}

/// `Auditor::infer` runs the model for the vendor and audits the same features.
#[test]
fn infer_serves_the_models_output_and_audits_it() {
    infer_serves_and_audits(shipped_auditor_config(), "fmnist-memorizing");
}

/// The same for the vision transformer, whose taps are token sequences pooled by their max.
#[test]
fn infer_serves_a_vision_transformer_and_audits_its_token_sequences() {
    let config = mint_audit::Config::from_path(repo().join("models/fmnist-vit/auditor.json")).unwrap();
    assert!(config.taps.iter().filter(|t| t.kind == TapKind::TokenSequence).count() == 4);
    infer_serves_and_audits(config, "fmnist-vit");
}

/// The same with `model.runtime: "onnxruntime"`.
#[cfg(feature = "onnxruntime")]
#[test]
fn infer_on_onnxruntime_serves_the_models_output_and_audits_it() {
    let mut json = shipped_config();
    json["model"]["runtime"] = "onnxruntime".into();
    json["model"]["onnxruntime_library"] = venv_onnxruntime().to_str().unwrap().into();
    infer_serves_and_audits(mint_audit::Config::from_json(&json.to_string(), &repo()).unwrap(), "fmnist-memorizing");
}

fn infer_serves_and_audits(config: mint_audit::Config, model: &str) {
    use std::sync::{Arc, Mutex};
    let dir = repo().join("models").join(model);
    let width = config.taps.iter().map(|t| t.feature_width()).sum::<usize>();
    let (shape, inputs) = read_npy(&dir.join("reference/inputs.npy"));
    let (_, logits) = read_npy(&dir.join("reference/logits.npy"));
    let (_, features) = read_npy(&dir.join("reference/features.npy"));
    let n = shape[0];
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let auditor = Auditor::with_sink(
        config,
        Arc::new(move |r: &[mint_audit::AuditResult]| sink.lock().unwrap().extend_from_slice(r)),
    )
    .unwrap();
    let ids: Vec<u64> = (100..100 + n as u64).collect();
    let mut out = vec![0f32; n * 10];
    let report = auditor.infer(&ids, &inputs, &mut out).unwrap();
    assert_eq!(report.accepted, n);
    assert!(out.iter().zip(&logits).all(|(a, b)| (a - b).abs() < 1e-4));
    auditor.close(std::time::Duration::from_secs(30));
    let mut results = got.lock().unwrap().clone();
    results.sort_by_key(|r| r.sample_id);
    assert_eq!(results.iter().map(|r| r.sample_id).collect::<Vec<_>>(), ids);
    // The same scores as the head on PyTorch's features.
    let head = HeadModel::load(&dir.join("head.onnx"), None, &[width], ScoreOutput::Probability).unwrap();
    let mut expected = Vec::new();
    head.runner().unwrap().score(&features, n, &mut expected).unwrap();
    for (r, e) in results.iter().zip(&expected) {
        assert!((r.score - e).abs() < 1e-4, "{} vs {e}", r.score);
    }
}
