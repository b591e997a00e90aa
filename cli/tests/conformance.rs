//! The conformance kit catches wrong integrations: a kit is written from the shipped model's
//! configuration, then a "vendor" (this test, through the library's Rust API, as a serving
//! path would) feeds its inputs with one deliberate mistake at a time, and `mint conformance
//! check` must fail naming the tap and the likely cause; the right integration must pass.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mint_audit::{Auditor, Config, Elements, Layout, TappedModel, TensorView};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn mint(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mint")).args(args).current_dir(repo()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[derive(Clone, Copy, PartialEq)]
enum Mistake {
    None,
    /// Tap stage2 hooked to the block's first convolution instead of its second.
    WrongLayer,
    /// Tap stage1's buffer is channels-last, declared as NCHW.
    NhwcDeclaredNchw,
    /// Pixels fed as 0..255 instead of the model's 0..1.
    NoNormalisation,
    /// The auditor runs another head than the kit's.
    StaleHead,
    /// Only one sample in two is audited.
    Sampled,
}

/// Feeds the kit's images through the shipped model and an auditor that records, as a vendor's
/// serving path would (with `mistake`); returns the recording's path.
fn integrate(kit: &Path, dir: &Path, mistake: Mistake, name: &str) -> PathBuf {
    let models = repo().join("models");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("fmnist-memorizing/auditor.json")).unwrap()).unwrap();
    let recording = dir.join(format!("{name}.json"));
    config["conformance"] = json!({"record": recording});
    config.as_object_mut().unwrap().remove("metrics");
    if mistake == Mistake::StaleHead {
        let other: Value =
            serde_json::from_str(&std::fs::read_to_string(models.join("fmnist-generalizing/auditor.json")).unwrap())
                .unwrap();
        config["head"] = other["head"].clone();
        config["head"]["path"] = json!(models.join("fmnist-generalizing/head.onnx"));
    }
    if mistake == Mistake::Sampled {
        config["sampling"] = json!({"one_in": 2});
    }
    let config = Config::from_json(&config.to_string(), &models.join("fmnist-memorizing")).unwrap();

    // The vendor's own preprocessing of the images the kit gives.
    let idx = std::fs::read(kit.join("images-idx3-ubyte")).unwrap();
    let n = u32::from_be_bytes(idx[4..8].try_into().unwrap()) as usize;
    let scale = if mistake == Mistake::NoNormalisation { 1.0 } else { 255.0 };
    let inputs: Vec<f32> = idx[16..].iter().map(|&b| b as f32 / scale).collect();

    let mut tensors: Vec<String> = config.taps.iter().map(|t| t.tensor.clone().unwrap()).collect();
    if mistake == Mistake::WrongLayer {
        tensors[1] = "/layer2/layer2.0/conv1/Conv_output_0".into();
    }
    let names: Vec<&str> = tensors.iter().map(String::as_str).collect();
    let model = TappedModel::load(config.model.onnx.as_ref().unwrap(), &names, &[1, 28, 28]).unwrap();
    let mut runner = model.runner().unwrap();
    runner.run(&inputs, n).unwrap();
    let mut views = runner.views().unwrap();
    let channels_last: Vec<f32>;
    if mistake == Mistake::NhwcDeclaredNchw {
        let Elements::F32(nchw) = views[0].elements() else { panic!("f32 maps") };
        let (c, hw) = (16, 28 * 28);
        channels_last = (0..n * c * hw)
            .map(|k| {
                let (i, rest) = (k / (c * hw), k % (c * hw));
                let (p, ch) = (rest / c, rest % c);
                nchw[i * c * hw + ch * hw + p]
            })
            .collect();
        views[0] = TensorView::map(&channels_last[..], Layout::Nchw, [n, 16, 28, 28]).unwrap();
    }
    let auditor = Auditor::new(config).unwrap();
    let ids: Vec<u64> = (0..n as u64).collect();
    auditor.submit(&ids, &views).unwrap();
    auditor.close(Duration::from_secs(60));
    assert!(recording.is_file(), "{name}: no recording ({:?})", auditor.last_worker_error());
    recording
}

#[test]
fn the_kit_passes_a_right_integration_and_names_each_wrong_one() {
    let dir = repo().join("target/test-scratch/conformance");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let kit = dir.join("kit");
    let (code, out) = mint(&[
        "conformance",
        "write",
        "--config",
        "models/fmnist-memorizing/auditor.json",
        "--data",
        "models/fmnist-memorizing/demo-members-idx3-ubyte",
        "--samples",
        "24",
        "--out",
        kit.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let check = |recording: &Path| {
        let junit = recording.with_extension("xml");
        let result = mint(&[
            "conformance",
            "check",
            "--kit",
            kit.to_str().unwrap(),
            "--recording",
            recording.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ]);
        let xml = std::fs::read_to_string(&junit).unwrap();
        (result.0, result.1, xml)
    };

    let (code, out, xml) = check(&integrate(&kit, &dir, Mistake::None, "right"));
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("conformance of fmnist-memorizing: PASS"), "{out}");
    assert!(xml.contains("failures=\"0\""), "{xml}");

    let (code, out, xml) = check(&integrate(&kit, &dir, Mistake::WrongLayer, "wrong-layer"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[pass] tap 'stage1'"), "{out}");
    assert!(out.contains("[FAIL] tap 'stage2' (activation_map):"), "{out}");
    assert!(out.contains("only this tap differs while earlier taps (stage1) agree"), "{out}");
    assert!(xml.contains("<failure"), "{xml}");

    let (code, out, _) = check(&integrate(&kit, &dir, Mistake::NhwcDeclaredNchw, "nhwc"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[FAIL] tap 'stage1'") && out.contains("a layout or stride mix-up (an NHWC buffer"), "{out}");
    assert!(out.contains("[pass] tap 'stage2'"), "{out}");
    let worst = out.lines().find(|l| l.contains("tap 'stage1'")).unwrap();
    assert!(worst.contains("worst: sample ") && worst.contains(", channel "), "{worst}");

    let (code, out, _) = check(&integrate(&kit, &dir, Mistake::NoNormalisation, "raw-pixels"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("every tap differs, the first included: the model's input differs"), "{out}");

    let (code, out, _) = check(&integrate(&kit, &dir, Mistake::StaleHead, "stale-head"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[FAIL] head") && out.contains("STALE OR OTHER HEAD"), "{out}");
    assert!(out.contains("[pass] tap 'logits'"), "the records still agree: {out}");

    let (code, out, _) = check(&integrate(&kit, &dir, Mistake::Sampled, "sampled"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("did not reach the head") && out.contains("sampling.one_in is 2"), "{out}");
}
