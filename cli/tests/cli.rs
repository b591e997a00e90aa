//! The `mint` toolkit end to end, as an auditor or a vendor's CI runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn mint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mint")).args(args).current_dir(repo()).output().expect("running mint")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "mint failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = repo().join("target/test-scratch").join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `mint eval` on the shipped model and head gives the figures of docs/experiments.md, to
/// the digits printed there, and writes every report.
#[test]
fn eval_of_the_shipped_head_reproduces_the_docs_table() {
    let out = scratch("reproduce");
    let stdout = ok(&mint(&[
        "eval",
        "--config",
        "models/fmnist-memorizing/auditor.json",
        "--split",
        "models/fmnist-memorizing/split.json",
        "--protocol",
        "same_distribution",
        "--out-dir",
        s(&out),
    ]));
    assert!(stdout.contains("No distribution shift found"), "{stdout}");
    let report = json(&out.join("report.json"));
    let docs = json(&repo().join("docs/experiments.json"));
    let rows = &docs["models"]["fmnist-memorizing"]["protocols"]["same_distribution"]["rows"];
    let shipped = &docs["shipped"]["fmnist-memorizing"];
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["row"] == shipped["row"] && r["recipe"] == shipped["recipe"])
        .expect("the shipped head's row");
    // The table's balanced accuracy is at the training-time threshold (0.5); the shipped
    // configuration's threshold is calibrated, so only threshold-free figures compare.
    let config = json(&repo().join("models/fmnist-memorizing/auditor.json"));
    let threshold = config["head"]["calibration"]["threshold"].as_f64().unwrap();
    assert_eq!(report["head"]["threshold"].as_f64().unwrap() as f32, threshold as f32);
    for figure in ["auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr"] {
        for part in ["value", "low", "high"] {
            let ours = report["mint"][figure][part].as_f64().unwrap();
            let table = row[figure][part].as_f64().unwrap();
            assert!((ours - table).abs() < 5e-4, "{figure}.{part}: eval {ours:.4} vs docs {table:.4}");
        }
    }
    for file in ["junit.xml", "roc.svg", "roc_loglog.svg", "scores.csv"] {
        assert!(out.join(file).metadata().unwrap().len() > 100, "{file}");
    }
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"0\""), "{junit}");
    // The report reads back as its type and matches its documented schema.
    let typed: mint_toolkit::formats::reports::EvalReport =
        mint_toolkit::formats::reports::load(&out.join("report.json")).unwrap();
    assert_eq!(typed.head.taps.len(), report["head"]["taps"].as_array().unwrap().len());
    valid_by_schema("eval_report.schema.json", &[&out.join("report.json")]);
}

#[test]
fn a_threshold_the_head_misses_fails_the_run_and_junit_says_why() {
    let out = scratch("gate");
    let run = mint(&[
        "eval",
        "--config",
        "models/fmnist-memorizing/auditor.json",
        "--split",
        "models/fmnist-memorizing/split.json",
        "--protocol",
        "same_distribution",
        "--limit",
        "200",
        "--bootstrap",
        "100",
        "--min-auc",
        "0.99",
        "--min-tpr-at-fpr",
        "0.01:0.001",
        "--out-dir",
        s(&out),
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", String::from_utf8_lossy(&run.stdout));
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"1\"") && junit.contains("auc &gt;= 0.99"), "{junit}");
    assert!(json(&out.join("report.json"))["passed"] == false);
}

#[test]
fn a_cross_dataset_split_is_flagged_as_distribution_shift() {
    let out = scratch("shift");
    let args = [
        "eval",
        "--config",
        "models/fmnist-memorizing/auditor.json",
        "--split",
        "models/fmnist-memorizing/split.json",
        "--protocol",
        "cross_dataset",
        "--limit",
        "300",
        "--bootstrap",
        "100",
        "--out-dir",
        s(&out),
    ];
    let run = mint(&args);
    assert_eq!(run.status.code(), Some(1), "a shift fails the run by default");
    let report = json(&out.join("report.json"));
    assert_eq!(report["distribution_shift"]["detected"], true);
    assert!(report["distribution_shift"]["blind_auc"]["value"].as_f64().unwrap() > 0.9);
    assert!(String::from_utf8_lossy(&run.stdout).contains("DISTRIBUTION SHIFT"));
    let mut allowed = args.to_vec();
    allowed.push("--allow-shift");
    ok(&mint(&allowed));
}

#[test]
fn inspect_suggests_the_last_convolution_of_each_stage() {
    let stdout = ok(&mint(&["inspect", "models/fmnist-generalizing/model.onnx"]));
    let descriptor = json(&repo().join("models/fmnist-generalizing/model.json"));
    for (i, tap) in descriptor["taps"].as_array().unwrap().iter().enumerate().take(4) {
        let line = stdout.lines().find(|l| l.trim_start().starts_with(&format!("stage{}", i + 1))).unwrap();
        assert!(line.contains(tap["tensor"].as_str().unwrap()), "{line}");
    }
    let outcome = stdout.lines().find(|l| l.trim_start().starts_with("outcome")).unwrap();
    assert!(outcome.split_whitespace().nth(1) == Some("logits"), "{outcome}");
}

/// `mint inspect` on ResNets exported from PyTorch as auditors bring them: the outcome found
/// whatever the order of the graph's outputs (stage maps or an embedding declared first, a
/// softmax last), the stem no stage, with fixed and dynamic batch; `--json` for scripts.
#[test]
fn inspect_finds_outcome_and_stages_of_models_it_never_saw() {
    let dir = scratch("inspect-torch");
    // The research package, importable from the checkout's venv (scripts/setup.sh).
    let python =
        std::env::var("MINT_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|_| repo().join(".venv/bin/python"));
    let made = Command::new(python).args(["-m", "mint_research.make_test_models"]).arg(&dir).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let expected = json(&dir.join("expected.json"));
    for (variant, want) in expected.as_object().unwrap() {
        let model = dir.join(format!("{variant}.onnx"));
        let doc: serde_json::Value = serde_json::from_str(&ok(&mint(&["inspect", "--json", s(&model)]))).unwrap();
        let taps = doc["suggested_taps"].as_array().unwrap();
        let stages: Vec<_> = taps.iter().filter(|t| t["tap"]["kind"] == "activation_map").collect();
        assert_eq!(stages.len(), 4, "{variant}: {doc:#}");
        for (i, t) in stages.iter().enumerate() {
            let node = want["stages"][i].as_str().unwrap();
            assert_eq!(t["tap"]["name"], format!("stage{}", i + 1), "{variant}");
            assert_eq!(t["tap"]["tensor"], format!("{node}_output_0"), "{variant}");
            assert_eq!(t["tap"]["channels"], want["channels"][i], "{variant}");
            assert_eq!(t["tap"]["spatial"], serde_json::json!([want["spatial"][i], want["spatial"][i]]), "{variant}");
            assert!(t["why"].as_str().unwrap().starts_with("the last 3×3 convolution"), "{t}");
        }
        let outcome =
            taps.iter().find(|t| t["tap"]["kind"] == "outcome").unwrap_or_else(|| panic!("{variant}: {doc:#}"));
        assert_eq!(outcome["tap"]["tensor"], want["outcome"], "{variant}");
        assert_eq!(outcome["tap"]["channels"], want["classes"], "{variant}");
        assert!(outcome["why"].as_str().unwrap().contains("Gemm"), "{outcome}");
        let stem = &doc["passed_over"][0];
        assert!(stem["tensor"].as_str().unwrap().starts_with("/stem/"), "{variant}: {stem}");
        assert!(stem["why"].as_str().unwrap().contains("stem"), "{stem}");
    }
}

/// Labels as numpy keeps them (NPY of int64) give the loss baseline the IDX labels give; a bad
/// labels file is refused naming the flag and the file; without labels the report says the
/// loss baseline was skipped and why.
#[test]
fn eval_takes_npy_labels_and_says_what_it_skipped() {
    let dir = scratch("labels");
    let n = 500; // the demo sets' size: labels describe the whole file, before --limit
    let (idx, npy) = (dir.join("labels-idx1-ubyte"), dir.join("labels.npy"));
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let mut raw = vec![0, 0, 8, 1];
    raw.extend((n as u32).to_be_bytes());
    raw.extend(&labels);
    std::fs::write(&idx, raw).unwrap();
    {
        use npyz::WriterBuilder;
        let file = std::fs::File::create(&npy).unwrap();
        let mut w =
            npyz::WriteOptions::<i64>::new().default_dtype().shape(&[n as u64]).writer(file).begin_nd().unwrap();
        w.extend(labels.iter().map(|&l| i64::from(l))).unwrap();
        w.finish().unwrap();
    }
    let eval = |out: &Path, labels: Option<(&Path, &Path)>| {
        let mut args = vec![
            "eval".to_string(),
            "--config".into(),
            "models/fmnist-memorizing/auditor.json".into(),
            "--members".into(),
            "models/fmnist-memorizing/demo-members-idx3-ubyte".into(),
            "--non-members".into(),
            "models/fmnist-memorizing/demo-non-members-idx3-ubyte".into(),
            "--limit".into(),
            "60".into(),
            "--bootstrap".into(),
            "50".into(),
            "--allow-shift".into(),
            "--out-dir".into(),
            s(out).into(),
        ];
        if let Some((m, nm)) = labels {
            args.extend(["--members-labels".into(), s(m).into(), "--non-members-labels".into(), s(nm).into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mint(&args)
    };
    let (a, b, c) = (dir.join("idx"), dir.join("npy"), dir.join("none"));
    ok(&eval(&a, Some((&idx, &idx))));
    ok(&eval(&b, Some((&npy, &npy))));
    let from_idx = &json(&a.join("report.json"))["baselines"]["loss"];
    assert!(from_idx["auc"]["value"].is_number(), "{from_idx}");
    assert_eq!(from_idx, &json(&b.join("report.json"))["baselines"]["loss"]);

    let stdout = ok(&eval(&c, None));
    let line = stdout.lines().find(|l| l.trim_start().starts_with("loss")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("skipped: no labels given"), "{line}");
    assert!(json(&c.join("report.json"))["baselines"]["loss"]["skipped"].is_string());

    let wrong = eval(&c, Some((&idx, &repo().join("models/fmnist-memorizing/demo-members-idx3-ubyte"))));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(2), "{err}");
    assert!(err.contains("--non-members-labels") && err.contains("demo-members-idx3-ubyte"), "{err}");
}

fn npy_bytes(values: &[i64]) -> Vec<u8> {
    use npyz::WriterBuilder;
    let mut out = Vec::new();
    let mut w = npyz::WriteOptions::<i64>::new()
        .default_dtype()
        .shape(&[values.len() as u64])
        .writer(&mut out)
        .begin_nd()
        .unwrap();
    w.extend(values.iter().copied()).unwrap();
    w.finish().unwrap();
    out
}

/// `mint split` makes a balanced, seeded, hash-pinned split that `mint eval` takes; index lists
/// may live in NPY and NPZ files; a changed source and a malformed field are refused, naming
/// the field.
#[test]
fn split_files_are_made_checked_and_read_from_npy_and_npz() {
    let dir = scratch("split");
    let (members, non_members) = (dir.join("members-idx3-ubyte"), dir.join("non-members-idx3-ubyte"));
    std::fs::copy(repo().join("models/fmnist-memorizing/demo-members-idx3-ubyte"), &members).unwrap();
    std::fs::copy(repo().join("models/fmnist-memorizing/demo-non-members-idx3-ubyte"), &non_members).unwrap();
    let make = |out: &Path, seed: &str| {
        ok(&mint(&[
            "split",
            "--members",
            s(&members),
            "--non-members",
            s(&non_members),
            "--per-phase",
            "100",
            "--seed",
            seed,
            "--out",
            s(out),
        ]))
    };
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    make(&a, "3");
    make(&b, "3");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "the same seed, the same split");
    let split = json(&a);
    let protocol = &split["protocols"]["default"];
    let idx = |phase: &str, class: &str| -> Vec<u64> {
        protocol[phase][class]["indices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
    };
    for class in ["members", "non_members"] {
        let (train, eval) = (idx("head_train", class), idx("eval", class));
        assert_eq!((train.len(), eval.len()), (100, 100), "balanced");
        assert!(train.iter().all(|i| !eval.contains(i)), "{class}: the phases are disjoint");
    }
    assert_eq!(split["sources"]["members"]["sha256"].as_str().unwrap().len(), 64);

    let eval = |split: &Path, out: &str| {
        let out = dir.join(out);
        let run = mint(&[
            "eval",
            "--config",
            "models/fmnist-memorizing/auditor.json",
            "--split",
            s(split),
            "--protocol",
            "default",
            "--bootstrap",
            "50",
            "--allow-shift",
            "--out-dir",
            s(&out),
        ]);
        (run, out)
    };
    let (run, inline) = eval(&a, "inline");
    ok(&run);

    // The same lists from an NPY file and from an NPZ archive.
    std::fs::write(
        dir.join("eval_members.npy"),
        npy_bytes(&idx("eval", "members").iter().map(|&i| i as i64).collect::<Vec<_>>()),
    )
    .unwrap();
    {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::fs::File::create(dir.join("lists.npz")).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("eval_non_members.npy", options).unwrap();
        zip.write_all(&npy_bytes(&idx("eval", "non_members").iter().map(|&i| i as i64).collect::<Vec<_>>())).unwrap();
        zip.finish().unwrap();
    }
    let mut from_files = split.clone();
    from_files["protocols"]["default"]["eval"]["members"]["indices"] = "eval_members.npy".into();
    from_files["protocols"]["default"]["eval"]["non_members"]["indices"] = "lists.npz:eval_non_members".into();
    let c = dir.join("c.json");
    std::fs::write(&c, from_files.to_string()).unwrap();
    let (run, files) = eval(&c, "files");
    ok(&run);
    assert_eq!(json(&inline.join("report.json"))["mint"]["auc"], json(&files.join("report.json"))["mint"]["auc"]);

    // Errors name the field.
    let refused = |edit: &dyn Fn(&mut serde_json::Value), expect: &str| {
        let mut broken = split.clone();
        edit(&mut broken);
        let path = dir.join("broken.json");
        std::fs::write(&path, broken.to_string()).unwrap();
        let (run, _) = eval(&path, "broken");
        let err = String::from_utf8_lossy(&run.stderr).into_owned();
        assert_eq!(run.status.code(), Some(2), "{err}");
        assert!(err.contains(expect), "expected '{expect}' in: {err}");
    };
    refused(
        &|v| v["protocols"]["default"]["eval"]["members"]["indices"] = "oops.txt".into(),
        "protocols.default.eval.members.indices",
    );
    refused(
        &|v| v["protocols"]["default"]["eval"]["members"]["indices"] = serde_json::json!([-1]),
        "protocols.default.eval.members.indices",
    );
    refused(
        &|v| v["protocols"]["default"]["head_train"]["non_members"]["source"] = "nope".into(),
        "protocols.default.head_train.non_members.source",
    );
    refused(
        &|v| v["protocols"]["default"]["eval"]["members"]["indices"] = serde_json::json!([100000]),
        "protocols.default.eval.members.indices",
    );
    refused(&|v| v["sources"]["members"]["colour"] = "red".into(), "sources.members");

    // The schema in docs says the same: the shipped splits and this one pass it (Python's
    // jsonschema, Debian's), the broken ones it is shown do not.
    let validate = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
for path in sys.argv[2:]:
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.load(open(path))))
    print(path, "valid" if not errors else "invalid at " + "/".join(map(str, errors[0].absolute_path)))
"#;
    let mut negative = split.clone();
    negative["protocols"]["default"]["eval"]["members"]["indices"] = serde_json::json!([-1]);
    std::fs::write(dir.join("negative.json"), negative.to_string()).unwrap();
    let python = std::env::var("MINT_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let checked = Command::new(python)
        .args(["-c", validate, s(&repo().join("docs/schemas/split.schema.json"))])
        .args([
            repo().join("models/fmnist-memorizing/split.json"),
            repo().join("models/fmnist-generalizing/split.json"),
        ])
        .args([&a, &c, &dir.join("negative.json")])
        .output()
        .unwrap();
    let verdicts = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{verdicts}{}", String::from_utf8_lossy(&checked.stderr));
    assert_eq!(verdicts.matches(" valid").count(), 4, "{verdicts}");
    assert!(verdicts.contains("negative.json invalid at protocols/default/eval/members/indices"), "{verdicts}");
    // A source that is not the file the split was made from.
    let mut bytes = std::fs::read(&members).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&members, bytes).unwrap();
    refused(&|_| {}, "sources.members.sha256");
}

/// The three input formats give the same features for the same images.
#[test]
fn extract_reads_idx_npy_and_image_folders_alike() {
    let dir = scratch("formats");
    let idx = repo().join("models/fmnist-memorizing/demo-members-idx3-ubyte");
    let raw = std::fs::read(&idx).unwrap();
    let n = 12;
    let pixels = &raw[16..16 + n * 784];
    // The same 12 images as a uint8 NPY and as PNG files.
    let npy = dir.join("images.npy");
    {
        use npyz::WriterBuilder;
        let file = std::fs::File::create(&npy).unwrap();
        let mut w =
            npyz::WriteOptions::new().default_dtype().shape(&[n as u64, 28, 28]).writer(file).begin_nd().unwrap();
        w.extend(pixels.iter().copied()).unwrap();
        w.finish().unwrap();
    }
    let pngs = dir.join("pngs");
    std::fs::create_dir_all(&pngs).unwrap();
    for i in 0..n {
        image::GrayImage::from_raw(28, 28, pixels[i * 784..(i + 1) * 784].to_vec())
            .unwrap()
            .save(pngs.join(format!("{i:03}.png")))
            .unwrap();
    }
    let mut subset = raw[..16].to_vec();
    subset[4..8].copy_from_slice(&(n as u32).to_be_bytes());
    subset.extend_from_slice(pixels);
    let idx12 = dir.join("twelve-idx3-ubyte");
    std::fs::write(&idx12, subset).unwrap();
    let mut features = Vec::new();
    for (name, input) in [("idx", &idx12), ("npy", &npy), ("png", &pngs)] {
        let out = dir.join(format!("{name}.npy"));
        ok(&mint(&[
            "extract",
            "--model-json",
            "models/fmnist-memorizing/model.json",
            "--data",
            s(input),
            "--out",
            s(&out),
        ]));
        let file = std::io::BufReader::new(std::fs::File::open(&out).unwrap());
        let array = npyz::NpyFile::new(file).unwrap();
        assert_eq!(array.shape(), &[n as u64, 250]);
        features.push(array.into_vec::<f32>().unwrap());
    }
    assert_eq!(features[0], features[1]);
    assert_eq!(features[0], features[2]);
}

/// `--runtime onnxruntime` runs the audited model on the onnxruntime of pip's wheel and gives
/// tract's features; without a library it says which field or flag names one.
#[test]
fn extract_on_onnxruntime_gives_tracts_features() {
    let dir = scratch("onnxruntime");
    let library = mint_audit::Runtime::onnxruntime_in_venv(&repo().join(".venv"))
        .expect("no onnxruntime/capi/libonnxruntime.so.* in .venv: run scripts/setup.sh");
    let data = "models/fmnist-memorizing/demo-members-idx3-ubyte";
    let mut features = Vec::new();
    for runtime in [&["--runtime", "tract"][..], &["--runtime", "onnxruntime", "--onnxruntime-library", s(&library)]] {
        let out = dir.join(format!("{}.npy", runtime[1]));
        let mut args = vec!["extract", "--model-json", "models/fmnist-memorizing/model.json", "--data", data];
        args.extend_from_slice(&["--out", s(&out)]);
        args.extend_from_slice(runtime);
        ok(&mint(&args));
        let file = std::io::BufReader::new(std::fs::File::open(&out).unwrap());
        features.push(npyz::NpyFile::new(file).unwrap().into_vec::<f32>().unwrap());
    }
    assert_eq!(features[0].len(), features[1].len());
    assert!(!features[0].is_empty());
    let worst = features[0].iter().zip(&features[1]).map(|(a, b)| (a - b).abs() / a.abs().max(1.0)).fold(0.0, f32::max);
    assert!(worst < 1e-4, "onnxruntime's features differ from tract's by {worst} (relative)");

    let out = Command::new(env!("CARGO_BIN_EXE_mint"))
        .args(["extract", "--model-json", "models/fmnist-memorizing/model.json", "--data", data])
        .args(["--out", s(&dir.join("none.npy")), "--runtime", "onnxruntime"])
        .env_remove("ORT_DYLIB_PATH")
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("model.onnxruntime_library") && stderr.contains("ORT_DYLIB_PATH"), "{stderr}");
}

/// Heads written by `mint train` score the same in onnxruntime as in the library (1e-5).
#[test]
fn trained_heads_score_alike_in_onnxruntime_and_the_library() {
    let python =
        std::env::var("MINT_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|_| repo().join(".venv/bin/python"));
    assert!(python.exists(), "{} missing: run scripts/setup.sh", python.display());
    let dir = scratch("train");
    let feats = dir.join("features");
    ok(&mint(&[
        "extract",
        "--model-json",
        "models/fmnist-memorizing/model.json",
        "--split",
        "models/fmnist-memorizing/split.json",
        "--protocol",
        "same_distribution",
        "--limit",
        "300",
        "--out",
        s(&feats),
    ]));
    for recipe in ["standardized", "paper"] {
        let head = dir.join(format!("{recipe}.onnx"));
        let config = dir.join(format!("{recipe}.json"));
        let stdout = ok(&mint(&[
            "train",
            "--features",
            s(&feats),
            "--recipe",
            recipe,
            "--epochs",
            "15",
            "--out",
            s(&head),
            "--config-out",
            s(&config),
            "--model-json",
            "models/fmnist-memorizing/model.json",
        ]));
        assert!(stdout.contains("tract vs PyTorch"), "{stdout}");
        // onnxruntime on the eval features, against the library's head runtime.
        let script = format!(
            "import numpy as np, onnxruntime as ort, sys\n\
             x = np.concatenate([np.load('{f}/eval_members.npy'), np.load('{f}/eval_non_members.npy')]).astype(np.float32)\n\
             s = ort.InferenceSession('{h}', providers=['CPUExecutionProvider'])\n\
             np.save('{o}', s.run(None, {{s.get_inputs()[0].name: x}})[0].reshape(-1))",
            f = feats.display(),
            h = head.display(),
            o = dir.join(format!("{recipe}-ort.npy")).display()
        );
        let status = Command::new(&python).args(["-c", &script]).status().unwrap();
        assert!(status.success());
        let read = |p: &Path| {
            npyz::NpyFile::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()))
                .unwrap()
                .into_vec::<f32>()
                .unwrap()
        };
        let ort_scores = read(&dir.join(format!("{recipe}-ort.npy")));
        let mut x = read(&feats.join("eval_members.npy"));
        x.extend(read(&feats.join("eval_non_members.npy")));
        let head_model = mint_head::HeadModel::load(&head, None, &[250], mint_audit::config::ScoreOutput::Probability)
            .unwrap()
            .with_batch_plans(&[1, 64])
            .unwrap();
        let mut ours = Vec::new();
        let mut runner = head_model.runner().unwrap();
        for chunk in x.chunks(64 * 250) {
            runner.score(chunk, chunk.len() / 250, &mut ours).unwrap();
        }
        let worst = ours.iter().zip(&ort_scores).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{recipe}: onnxruntime and the library differ by {worst}");
        // The configuration it wrote is one the library accepts and runs.
        let cfg = json(&config);
        assert_eq!(cfg["head"]["sha256"], head_model.sha256());
        // The training report as written matches its documented schema.
        valid_by_schema("train_report.schema.json", &[&dir.join(format!("{recipe}.onnx.json"))]);
    }
    valid_by_schema("features.schema.json", &[&feats.join("features.json")]);
}

/// Checks files against a schema of docs/schemas/ with Python's jsonschema (Debian's), an
/// implementation that is not ours.
fn valid_by_schema(schema: &str, files: &[&Path]) {
    let validate = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
for path in sys.argv[2:]:
    jsonschema.Draft202012Validator(schema).validate(json.load(open(path)))
"#;
    let python = std::env::var("MINT_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let out = Command::new(python)
        .args(["-c", validate, s(&repo().join("docs/schemas").join(schema))])
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{schema}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `mint eval --calibrate` chooses a threshold for 1% FPR on half the non-members, checks it on
/// the other half, and writes a configuration the library loads, with the calibration in it.
#[test]
fn calibration_writes_a_configuration_the_library_serves() {
    let out = scratch("calibrate");
    let models = repo().join("models/fmnist-memorizing");
    let mut config = json(&models.join("auditor.json"));
    config["model"]["onnx"] = s(&models.join("model.onnx")).into();
    config["head"]["path"] = s(&models.join("head.onnx")).into();
    let head = config["head"].as_object_mut().unwrap();
    head.remove("calibration");
    head.remove("threshold");
    let path = out.join("auditor.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let reports = out.join("report");
    let calibrate = |extra: &[&str]| {
        let base = ["eval", "--config", s(&path), "--split", "models/fmnist-memorizing/split.json"];
        let more = ["--protocol", "same_distribution", "--out-dir", s(&reports), "--calibrate", "0.01"];
        mint(&[&base[..], &more[..], extra].concat())
    };
    let stdout = ok(&calibrate(&[]));
    assert!(stdout.contains("[pass] calibration: the check non-members"), "{stdout}");
    let report = json(&reports.join("report.json"));
    let c = &report["calibration"];
    assert_eq!(c["non_members"], 500);
    assert_eq!(c["check"]["non_members"], 500);
    assert!(c["check"]["flagged"].as_u64().unwrap() <= 25);
    let (low, high) = (c["fpr"]["low"].as_f64().unwrap(), c["fpr"]["high"].as_f64().unwrap());
    assert!(low < 0.01 && 0.01 < high && high < 0.03, "{c}");
    assert!(c["tpr"]["estimate"].as_f64().unwrap() > 0.02, "the memorizing head finds some members at 1% FPR: {c}");
    let parts = std::fs::read_to_string(reports.join("calibration.csv")).unwrap();
    assert_eq!(parts.lines().count(), 1 + 1000);
    // Not written without --write-config; written beside the original with it, and only there.
    assert!(json(&path)["head"].get("calibration").is_none());
    let refused = calibrate(&["--write-config", s(&out.join("report/auditor.json"))]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("beside"));
    ok(&calibrate(&["--write-config", s(&path)]));
    let written = json(&path);
    assert_eq!(written["head"]["threshold"], c["threshold"]);
    assert_eq!(written["head"]["calibration"]["digest"], c["digest"]);
    let loaded = mint_audit::Config::from_path(&path).unwrap();
    assert_eq!(loaded.threshold(), c["threshold"].as_f64().unwrap() as f32);
    assert!(loaded.calibration().is_some_and(|k| k.non_members == 500));
}

/// `mint dataset-test` finds 100 members of the memorizing model against 500 non-members, says
/// so in its reports, and its exit code follows `--expect`.
#[test]
fn the_dataset_test_finds_members_and_its_exit_code_follows_the_expectation() {
    let out = scratch("dataset-test");
    let args = |expect: &str| {
        mint(&[
            "dataset-test",
            "--config",
            "models/fmnist-memorizing/auditor.json",
            "--split",
            "models/fmnist-memorizing/split.json",
            "--protocol",
            "same_distribution",
            "--suspect-limit",
            "100",
            "--reference-limit",
            "500",
            "--out-dir",
            s(&out),
            "--expect",
            expect,
        ])
    };
    let stdout = ok(&args("evidence"));
    assert!(stdout.contains("EVIDENCE of membership") && stdout.contains("[pass]"), "{stdout}");
    let report = json(&out.join("report.json"));
    assert_eq!(
        (report["suspect"]["samples"].as_u64(), report["reference"]["samples"].as_u64()),
        (Some(100), Some(500))
    );
    assert!(report["rank_test"]["p_value"].as_f64().unwrap() < 1e-6, "{report}");
    assert!(report["rank_test"]["auc"].as_f64().unwrap() > 0.7);
    assert!(report["binomial_test"]["p_value"].as_f64().unwrap() < 0.05);
    assert!(report["member_fraction"]["high"].as_f64().unwrap() > 0.5);
    assert_eq!(report["power"]["rows"].as_array().unwrap().len(), 3);
    assert!(!report["distribution_shift"]["detected"].as_bool().unwrap());
    let refused = args("no-evidence");
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stdout));
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"1\""), "{junit}");
    let typed: mint_toolkit::formats::reports::DatasetTestReport =
        mint_toolkit::formats::reports::load(&out.join("report.json")).unwrap();
    assert!(!typed.passed && typed.evidence);
    valid_by_schema("dataset_test_report.schema.json", &[&out.join("report.json")]);
}

/// Numbers agree within `tolerance` (absolute, or relative for large ones), everything else
/// exactly; `skip` names keys left out (timings, machine-dependent digests).
fn assert_close(ours: &serde_json::Value, theirs: &serde_json::Value, at: &str, skip: &[&str]) {
    use serde_json::Value;
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= 0.02_f64.max(0.02 * b.abs()), "{at}: {a} here, {b} in the docs");
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
                assert_close(&a[k], v, &format!("{at}.{k}"), skip);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_close(x, y, &format!("{at}[{i}]"), skip);
            }
        }
        (a, b) => assert_eq!(a, b, "{at}"),
    }
}

/// docs/evidence.md's tables for the memorizing model are what `mint evidence-study` computes
/// (within a count or two: another CPU's kernels may round a score differently).
#[test]
fn the_evidence_study_reproduces_the_docs_figures() {
    let out = scratch("evidence-study");
    let json_out = out.join("evidence.json");
    ok(&mint(&["evidence-study", "--model", "models/fmnist-memorizing", "--json", s(&json_out)]));
    let ours = json(&json_out);
    let docs = json(&repo().join("docs/evidence.json"));
    let theirs = docs["models"].as_array().unwrap().iter().find(|m| m["model"] == "fmnist-memorizing").unwrap();
    assert_close(&ours["models"][0], theirs, "fmnist-memorizing", &["digest_matches", "count"]);
    assert_eq!(ours["settings"], docs["settings"]);
    // The claims the doc's prose rests on.
    let m = &ours["models"][0];
    assert!(m["detected_at_95"]["rank"].as_u64().is_some_and(|k| k <= 100), "power target: {m}");
    assert!(m["null"]["rank"]["alarms"]["low"].as_f64().unwrap() <= 0.01, "rank alarms above alpha: {m}");
    assert!(m["null"]["binomial"]["alarms"]["low"].as_f64().unwrap() <= 0.01, "binomial alarms above alpha: {m}");
}

/// `mint evidence` refuses what it cannot use with a clear error (exit 2): a Prometheus that
/// does not answer, a malformed expectation.
#[test]
fn the_fleet_command_says_what_is_wrong() {
    let run = mint(&["evidence", "--prometheus", "http://127.0.0.1:9", "--timeout", "5"]);
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("query_range mint_membership_score_bucket") && err.contains("127.0.0.1:9"), "{err}");
    let run = mint(&["evidence", "--prometheus", "http://127.0.0.1:9", "--expect", "suspect=maybe"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("COHORT=evidence or COHORT=no-evidence"));
}

/// The anytime study on the memorising model, at a size a debug build runs in seconds: its
/// claims hold (type I at most alpha under continuous monitoring, the sequence's coverage,
/// members found sooner than by the fixed windows, e-BH's FDR). docs/evidence.md's tables
/// come from the full-size run of the same command.
#[test]
fn the_anytime_study_holds_its_claims() {
    let out = scratch("anytime-study");
    let json_out = out.join("anytime.json");
    ok(&mint(&[
        "evidence-study",
        "--anytime",
        "--model",
        "models/fmnist-memorizing",
        "--streams",
        "300",
        "--stream-length",
        "400",
        "--stream-draws",
        "30",
        "--max-length",
        "1500",
        "--fdr-cohorts",
        "200",
        "--fdr-repeats",
        "2",
        "--json",
        s(&json_out),
    ]));
    let m = &json(&json_out)["models"][0];
    for test in ["flags_check_part", "flags_at_the_boundary", "scores_one_replica", "scores_fleet_of_four", "average"] {
        let low = m["type_one"][test]["low"].as_f64().unwrap();
        assert!(low <= 0.01, "{test}: ever-rejection above alpha: {}", m["type_one"][test]);
    }
    for row in m["coverage"]["rows"].as_array().unwrap() {
        assert!(row["left"]["low"].as_f64().unwrap() <= 0.05, "coverage: {row}");
    }
    let members = &m["power"]["rows"][0];
    let (anytime, windows) =
        (members["anytime"]["median"].as_u64().unwrap(), members["windows"]["median"].as_u64().unwrap());
    assert!(anytime < windows, "members: anytime {anytime} vs windows {windows}");
    assert!(
        m["fdr"]["realised_fdr"].as_f64().unwrap() <= 0.05 && m["fdr"]["power"].as_f64().unwrap() > 0.5,
        "{}",
        m["fdr"]
    );
    assert!(m["certificates"]["rows"][2]["median_epsilon"].as_f64().is_some_and(|e| e < 0.5), "{}", m["certificates"]);
}

/// Writes a feature table of `n` texts: `loss` and `zlib` shifted by `shift` for members, two
/// noise features, and `head`, a score in [0, 1] that leans on `loss` (a deterministic LCG, so
/// the test needs no generator crate).
fn feature_table(path: &Path, n: usize, shift: f64, seed: u64) {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut uniform = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut normal = move || (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let (loss, zlib) = (normal() + shift, normal() + shift);
            let head = 1.0 / (1.0 + (-(loss + normal())).exp());
            format!(
                r#"{{"id": "text-{i}", "loss": {loss}, "zlib": {zlib}, "a": {}, "b": {}, "head": {head}}}"#,
                normal(),
                normal()
            )
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// `mint dataset-inference` finds a weak signal spread over features, keeps quiet on two
/// non-member sets, runs its power study with the null control, writes a report its schema
/// accepts, and refuses a malformed table by line.
#[test]
fn dataset_inference_finds_members_and_holds_its_null_control() {
    let dir = scratch("dataset-inference");
    let (members, suspect, validation, other) =
        (dir.join("members.jsonl"), dir.join("suspect.jsonl"), dir.join("validation.jsonl"), dir.join("other.jsonl"));
    feature_table(&members, 300, 0.35, 1);
    feature_table(&suspect, 300, 0.35, 2);
    feature_table(&validation, 400, 0.0, 3);
    feature_table(&other, 300, 0.0, 4);
    let run = |suspect: &Path, expect: &str, extra: &[&str]| {
        let out_dir = dir.join(format!("out-{expect}"));
        let mut args = vec!["dataset-inference", "--suspect", s(suspect), "--validation", s(&validation)];
        args.extend(["--rank-feature", "head", "--expect", expect, "--out-dir", s(&out_dir)]);
        args.extend(extra);
        (mint(&args), out_dir)
    };
    let (out, out_dir) = run(&suspect, "evidence", &["--members", s(&members), "--sizes", "20,150", "--draws", "60"]);
    let stdout = ok(&out);
    assert!(stdout.contains("EVIDENCE of membership"), "{stdout}");
    let report = json(&out_dir.join("report.json"));
    assert!(report["inference"]["p_value"].as_f64().unwrap() < 0.01, "{report}");
    assert_eq!(report["features"], serde_json::json!(["a", "b", "head", "loss", "zlib"]));
    let power = &report["power"]["rows"];
    assert!(power[1]["inference"]["rate"].as_f64().unwrap() > power[0]["inference"]["rate"].as_f64().unwrap());
    assert!(power[1]["inference_null"]["low"].as_f64().unwrap() <= 0.01, "{power}");
    valid_by_schema("dataset_inference_report.schema.json", &[&out_dir.join("report.json")]);

    // Non-members as the suspect set: no evidence, and an expectation of evidence fails (1).
    let (out, _) = run(&other, "no-evidence", &[]);
    assert!(ok(&out).contains("no evidence of membership"));
    let (out, _) = run(&other, "evidence", &["--features", "loss,zlib"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));

    // A malformed table is an error (2) that names the line.
    std::fs::write(dir.join("bad.jsonl"), "{\"loss\": 1.0}\n{\"loss\": null}\n").unwrap();
    let (out, _) = run(&dir.join("bad.jsonl"), "evidence", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"), "{}", String::from_utf8_lossy(&out.stderr));
}
