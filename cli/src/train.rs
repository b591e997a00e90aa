//! `mint train`: a Vanilla MINT head from extracted features.
//!
//! Training runs in PyTorch through the recipe shipped in `scripts/train_head.py` (embedded in
//! this binary, run with `--python`, Debian's `/usr/bin/python3` with `python3-torch` and
//! `python3-onnx` by default): auditors train heads in PyTorch anyway, and its ONNX exporter
//! is the reference. What comes back is then checked here: the head must load in the
//! library's runtime and give PyTorch's scores within 1e-5 on reference rows, or the command
//! fails.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, ensure, Context, Result};
use mint_audit::config::ScoreOutput;
use mint_head::HeadModel;
use serde_json::{json, Value};

use mint_toolkit::descriptor::Descriptor;
use mint_toolkit::extract::{read_npy, write_npy, FEATURES_VERSION};
use mint_toolkit::paths::relative_to;

const RECIPE: &str = include_str!("../../scripts/train_head.py");
const CNN_RECIPE: &str = include_str!("../../scripts/train_cnn_head.py");
/// The helpers both recipes import, written beside them.
const MINTDATA: &str = include_str!("../../scripts/mintdata.py");

#[derive(clap::Args)]
/// Train a MINT head on extracted features and export it to ONNX: a Vanilla head on per-channel
/// maxima, or a CNN head when the features are full maps (`mint extract --full-map`).
pub struct Args {
    /// A folder written by `mint extract --split` (uses head_train_members / head_train_non_members).
    #[arg(long, conflicts_with_all = ["members", "non_members"])]
    features: Option<PathBuf>,
    /// Member features, float32 NPY [n, F] (with its .json sidecar from `mint extract`).
    #[arg(long, requires = "non_members")]
    members: Option<PathBuf>,
    /// Non-member features, float32 NPY [n, F].
    #[arg(long)]
    non_members: Option<PathBuf>,
    /// Taps to train on, among those extracted, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    taps: String,
    /// `standardized` (the shipped default) or `paper` (the MINT paper's head, literally).
    #[arg(long, default_value = "standardized")]
    recipe: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Epochs (0: the recipe's default).
    #[arg(long, default_value_t = 0)]
    epochs: u32,
    /// The ONNX head to write (and `<out>.json` with the training report).
    #[arg(long)]
    out: PathBuf,
    /// Also write an auditor configuration using this head (needs --model-json).
    #[arg(long, requires = "model_json")]
    config_out: Option<PathBuf>,
    /// The audited model's descriptor, for --config-out.
    #[arg(long)]
    model_json: Option<PathBuf>,
    /// Decision threshold written into --config-out.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Address of the `/metrics` endpoint written into --config-out (off when not given).
    #[arg(long)]
    metrics_listen: Option<String>,
    /// A cohort declared in --config-out besides `default` (repeatable; e.g. `reference`).
    #[arg(long = "cohort", value_name = "NAME")]
    cohorts: Vec<String>,
    /// Python with PyTorch and onnx.
    #[arg(long, env = "MINT_PYTHON", default_value = "/usr/bin/python3")]
    python: PathBuf,
    /// Backend plugin written into --config-out for a CNN head (default: the CPU backend
    /// built beside this `mint`).
    #[arg(long)]
    backend_library: Option<PathBuf>,
}

/// Columns of the extracted features that belong to the requested taps.
struct Selection {
    taps: Vec<String>,
    ranges: Vec<(usize, usize)>,
    outcome: Option<(usize, usize)>,
}

fn select(meta: &Value, taps: &str) -> Result<Selection> {
    ensure!(meta["kind"] == "vanilla", "these are not Vanilla features (kind {})", meta["kind"]);
    let columns = meta["columns"].as_array().context("features.json has no columns")?;
    let wanted: Vec<String> = if taps == "all" {
        columns.iter().map(|c| c["tap"].as_str().unwrap_or_default().to_string()).collect()
    } else {
        taps.split(',').map(|s| s.trim().to_string()).collect()
    };
    let mut sel = Selection { taps: Vec::new(), ranges: Vec::new(), outcome: None };
    let mut width = 0;
    for name in wanted {
        let c = columns
            .iter()
            .find(|c| c["tap"] == name.as_str())
            .with_context(|| format!("tap '{name}' was not extracted (have: {})", meta["taps"]))?;
        let (a, b) = (c["start"].as_u64().unwrap() as usize, c["stop"].as_u64().unwrap() as usize);
        if c["kind"] == "outcome" {
            sel.outcome = Some((width, width + b - a));
        }
        width += b - a;
        sel.ranges.push((a, b));
        sel.taps.push(name);
    }
    Ok(sel)
}

fn take_columns(path: &Path, sel: &Selection, out: &Path) -> Result<usize> {
    let (shape, data) = read_npy(path)?;
    ensure!(shape.len() == 2, "{}: features must be [n, F], not {shape:?}", path.display());
    let (n, f) = (shape[0], shape[1]);
    let needed = sel.ranges.iter().map(|&(_, b)| b).max().unwrap_or(0);
    ensure!(f >= needed, "{}: features are [n, {f}], but their sidecar puts columns up to {needed}", path.display());
    let width: usize = sel.ranges.iter().map(|(a, b)| b - a).sum();
    let mut picked = Vec::with_capacity(n * width);
    for row in data.chunks(f) {
        for &(a, b) in &sel.ranges {
            picked.extend_from_slice(&row[a..b]);
        }
    }
    write_npy(out, &[n, width], &picked)?;
    Ok(width)
}

/// Reads and checks a features sidecar: what features made elsewhere must provide.
fn read_sidecar(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {}: the features' sidecar, which `mint extract` writes beside them; for features \
             made elsewhere write one, e.g. {{\"format\": \"mint-features\", \"version\": 1, \"kind\": \"vanilla\", \
             \"columns\": [{{\"tap\": \"stage1\", \"kind\": \"activation_map\", \"start\": 0, \"stop\": 64}}]}} \
             (docs/formats.md)",
            path.display()
        )
    })?;
    let meta: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    check_sidecar(&meta).with_context(|| format!("{} (the format: docs/formats.md)", path.display()))?;
    Ok(meta)
}

fn check_sidecar(meta: &Value) -> Result<()> {
    if let Some(format) = meta.get("format") {
        ensure!(format == "mint-features", "format: {format} is not \"mint-features\"");
    }
    if let Some(version) = meta.get("version") {
        let v = version.as_u64().context("version: not a whole number")?;
        ensure!(v <= FEATURES_VERSION, "version: {v} is newer than this mint reads ({FEATURES_VERSION})");
    }
    match meta["kind"].as_str() {
        Some("vanilla") => {
            let columns = meta["columns"].as_array().context("columns: missing, or not a list")?;
            ensure!(!columns.is_empty(), "columns: empty");
            let mut next = 0;
            for (i, c) in columns.iter().enumerate() {
                c["tap"].as_str().with_context(|| format!("columns[{i}].tap: missing, or not a string"))?;
                ensure!(
                    matches!(
                        c["kind"].as_str(),
                        Some("activation_map" | "outcome" | "token_sequence" | "token_logprobs" | "token_logits")
                    ),
                    "columns[{i}].kind: {} is not activation_map, outcome, token_sequence, token_logprobs or token_logits",
                    c["kind"]
                );
                let start = c["start"].as_u64().with_context(|| format!("columns[{i}].start: not a whole number"))?;
                let stop = c["stop"].as_u64().with_context(|| format!("columns[{i}].stop: not a whole number"))?;
                ensure!(
                    start == next && stop > start,
                    "columns[{i}]: [{start}, {stop}) does not follow the previous column at {next}"
                );
                next = stop;
            }
        }
        Some("full_map") => {
            let shape = meta["record_shape"].as_array().context("record_shape: missing, or not a list")?;
            ensure!(
                shape.len() == 3 && shape.iter().all(|d| d.as_u64().is_some_and(|d| d > 0)),
                "record_shape: {} is not [C, H, W]",
                meta["record_shape"]
            );
            meta["taps"][0].as_str().context("taps: names no tap")?;
        }
        _ => bail!("kind: {} is neither \"vanilla\" nor \"full_map\"", meta["kind"]),
    }
    Ok(())
}

fn sidecar(npy: &Path) -> PathBuf {
    if npy.file_name().is_some_and(|n| n.to_string_lossy().starts_with("head_train_")) {
        npy.with_file_name("features.json")
    } else {
        npy.with_extension("json")
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (members, non_members) = match (&args.features, &args.members, &args.non_members) {
        (Some(dir), None, None) => (dir.join("head_train_members.npy"), dir.join("head_train_non_members.npy")),
        (None, Some(m), Some(n)) => (m.clone(), n.clone()),
        _ => bail!("give --features DIR, or --members and --non-members"),
    };
    let meta_path = sidecar(&members);
    let meta = read_sidecar(&meta_path)?;
    if meta["kind"] == "full_map" {
        return run_cnn(&args, &members, &non_members, &meta);
    }
    let sel = select(&meta, &args.taps)?;

    let tmp = tempfile::tempdir()?;
    let recipe = tmp.path().join("train_head.py");
    std::fs::write(&recipe, RECIPE)?;
    std::fs::write(tmp.path().join("mintdata.py"), MINTDATA)?;
    let m = tmp.path().join("members.npy");
    let n = tmp.path().join("non_members.npy");
    let width = take_columns(&members, &sel, &m)?;
    take_columns(&non_members, &sel, &n)?;

    let mut cmd = Command::new(&args.python);
    // PyTorch's exporter warns about its own internals on every run; the recipe's report is
    // what the auditor reads.
    cmd.env("PYTHONWARNINGS", "ignore::UserWarning");
    cmd.arg(&recipe).arg("--members").arg(&m).arg("--non-members").arg(&n).arg("--out").arg(&args.out).args([
        "--recipe",
        &args.recipe,
        "--seed",
        &args.seed.to_string(),
        "--epochs",
        &args.epochs.to_string(),
    ]);
    if let Some((a, b)) = sel.outcome {
        cmd.arg("--outcome-columns").arg(format!("{a}:{b}"));
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    eprintln!("training a '{}' head on {} ({} features)...", args.recipe, sel.taps.join("+"), width);
    let status = cmd.status().with_context(|| format!("running {}", args.python.display()))?;
    ensure!(status.success(), "the training recipe failed ({status})");

    // The exported head must score in our runtime as it did in PyTorch.
    let head = HeadModel::load(&args.out, None, &[width], ScoreOutput::Probability)?;
    let report_path = PathBuf::from(format!("{}.json", args.out.display()));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report_path)?)?;
    let max_diff = check_reference(&head, &report["reference"], width)?;
    record_check(&report_path, report, json!(sel.taps), &head, max_diff)?;

    if let Some(config_out) = &args.config_out {
        let desc = Descriptor::load(args.model_json.as_ref().expect("required by clap"))?;
        let base = config_out.parent().unwrap_or(Path::new("."));
        let config = json!({
            "model": model_section(&desc, base)?,
            "taps": desc.taps.iter().map(tap_json).collect::<Vec<_>>(),
            "head": {"kind": "vanilla", "path": relative_to(&args.out, base), "sha256": head.sha256(),
                     "threshold": args.threshold, "taps": sel.taps},
        });
        write_config(config_out, config, args.metrics_listen.as_deref(), &args.cohorts)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A CNN head on full maps, checked in tract like a Vanilla one.
fn run_cnn(args: &Args, members: &Path, non_members: &Path, meta: &Value) -> Result<ExitCode> {
    let shape: Vec<usize> = serde_json::from_value(meta["record_shape"].clone())?;
    ensure!(shape.len() == 3, "full maps must be [C, H, W], not {shape:?}");
    let tap = meta["taps"][0].as_str().context("features.json names no tap")?.to_string();
    let tmp = tempfile::tempdir()?;
    let recipe = tmp.path().join("train_cnn_head.py");
    std::fs::write(&recipe, CNN_RECIPE)?;
    std::fs::write(tmp.path().join("mintdata.py"), MINTDATA)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    eprintln!("training a '{}' CNN head on the full maps of {tap} {shape:?}...", args.recipe);
    let status = Command::new(&args.python)
        .env("PYTHONWARNINGS", "ignore::UserWarning")
        .arg(&recipe)
        .arg("--members")
        .arg(members)
        .arg("--non-members")
        .arg(non_members)
        .arg("--out")
        .arg(&args.out)
        .args(["--recipe", &args.recipe, "--seed", &args.seed.to_string(), "--epochs", &args.epochs.to_string()])
        .status()
        .with_context(|| format!("running {}", args.python.display()))?;
    ensure!(status.success(), "the CNN training recipe failed ({status})");

    let head = HeadModel::load(&args.out, None, &shape, ScoreOutput::Probability)?;
    let report_path = PathBuf::from(format!("{}.json", args.out.display()));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report_path)?)?;
    let ref_name = report["reference"]["maps"].as_str().context("no reference maps")?;
    let (ref_shape, maps) = read_npy(&report_path.with_file_name(ref_name))?;
    let expected: Vec<f32> = serde_json::from_value(report["reference"]["scores"].clone())?;
    ensure!(ref_shape[1..] == shape[..], "reference maps are {ref_shape:?}");
    let max_diff = max_abs_diff(&head, &maps, &expected)?;
    record_check(&report_path, report, json!([tap]), &head, max_diff)?;

    if let Some(config_out) = &args.config_out {
        let desc = Descriptor::load(args.model_json.as_ref().expect("required by clap"))?;
        let base = config_out.parent().unwrap_or(Path::new("."));
        let library = match &args.backend_library {
            // A bare name stays bare: the library finds it beside itself at run time.
            Some(l) if l.components().count() == 1 => l.display().to_string(),
            Some(l) => relative_to(l, base),
            None => relative_to(&std::env::current_exe()?.with_file_name("libmint_backend_cpu.so"), base),
        };
        let config = json!({
            "model": model_section(&desc, base)?,
            "taps": desc.taps.iter().map(tap_json).collect::<Vec<_>>(),
            "head": {
                "kind": "cnn",
                "tap": tap,
                "threshold": args.threshold,
                "backend": {
                    "library": library,
                    "config": {"head": relative_to(&args.out, base), "sha256": head.sha256()},
                },
            },
        });
        write_config(config_out, config, args.metrics_listen.as_deref(), &args.cohorts)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Largest |tract − PyTorch| over the reference rows the recipe saved.
pub fn check_reference(head: &HeadModel, reference: &Value, width: usize) -> Result<f32> {
    let inputs: Vec<f32> = reference["inputs"]
        .as_array()
        .context("no reference rows")?
        .iter()
        .flat_map(|row| row.as_array().into_iter().flatten().map(|v| v.as_f64().unwrap_or(f64::NAN) as f32))
        .collect();
    let expected: Vec<f32> = reference["scores"]
        .as_array()
        .context("no reference scores")?
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    ensure!(inputs.len() == expected.len() * width, "reference rows are not {width} wide");
    max_abs_diff(head, &inputs, &expected)
}

/// Largest |score − expected| of `head` over reference inputs stored back to back.
fn max_abs_diff(head: &HeadModel, inputs: &[f32], expected: &[f32]) -> Result<f32> {
    let mut scores = Vec::new();
    head.runner()?.score(inputs, expected.len(), &mut scores)?;
    Ok(scores.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max))
}

/// Records the tract-versus-PyTorch check in the training report (refusing a head that
/// disagrees by more than 1e-5) and prints the head's digest.
fn record_check(report_path: &Path, mut report: Value, taps: Value, head: &HeadModel, max_diff: f32) -> Result<()> {
    ensure!(max_diff <= 1e-5, "the exported head's scores differ from PyTorch's by {max_diff:e} (> 1e-5)");
    report["taps"] = taps;
    report["sha256"] = json!(head.sha256());
    report["tract_max_abs_diff_vs_torch"] = json!(max_diff);
    std::fs::write(report_path, serde_json::to_string_pretty(&report)?)?;
    println!("{}  {}  (tract vs PyTorch: max |Δ| = {max_diff:.1e})", head.sha256(), head.path().display());
    Ok(())
}

/// The `model` section of an auditor configuration, with the ONNX path relative to `base`.
fn model_section(desc: &Descriptor, base: &Path) -> Result<Value> {
    Ok(json!({
        "id": desc.model.id,
        "version": desc.model.version,
        "input_shape": desc.input_shape(),
        "onnx": relative_to(desc.onnx(), base),
    }))
}

/// Writes an auditor configuration, once the library has accepted it.
fn write_config(path: &Path, mut config: Value, metrics_listen: Option<&str>, cohorts: &[String]) -> Result<()> {
    if let Some(listen) = metrics_listen {
        config["metrics"] = json!({"http": {"listen": listen}});
    }
    if !cohorts.is_empty() {
        config["cohorts"] = json!(cohorts);
    }
    let text = serde_json::to_string_pretty(&config)?;
    mint_audit::Config::from_json(&text, path.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(path, text + "\n")?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

pub fn tap_json(t: &mint_audit::config::TapConfig) -> Value {
    let mut v = json!({"name": t.name, "channels": t.channels, "kind": t.kind.label()});
    if let Some(p) = t.pooling {
        v["pooling"] = json!(p.label());
    }
    if let Some(most) = t.max_tokens {
        v["max_tokens"] = json!(most);
    }
    if let Some(s) = t.spatial {
        v["spatial"] = json!(s);
    }
    if let Some(tensor) = &t.tensor {
        v["tensor"] = json!(tensor);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sidecar_for_features_made_elsewhere_is_checked_field_by_field() {
        let good = json!({"format": "mint-features", "version": 1, "kind": "vanilla",
            "columns": [{"tap": "a", "kind": "activation_map", "start": 0, "stop": 4},
                        {"tap": "o", "kind": "outcome", "start": 4, "stop": 14}]});
        check_sidecar(&good).unwrap();
        // The minimal one docs/formats.md shows, without format and version (version 1).
        check_sidecar(
            &json!({"kind": "vanilla", "columns": [{"tap": "t", "kind": "activation_map", "start": 0, "stop": 64}]}),
        )
        .unwrap();
        let refused = |edit: &dyn Fn(&mut Value), field: &str| {
            let mut bad = good.clone();
            edit(&mut bad);
            let err = format!("{:#}", check_sidecar(&bad).unwrap_err());
            assert!(err.starts_with(field), "expected {field}: {err}");
        };
        refused(&|v| v["format"] = json!("npy"), "format");
        refused(&|v| v["version"] = json!(2), "version");
        refused(&|v| v["kind"] = json!("cnn"), "kind");
        refused(&|v| v["columns"][1]["kind"] = json!("logits"), "columns[1].kind");
        refused(&|v| v["columns"][1]["start"] = json!(5), "columns[1]");
        refused(&|v| v["columns"][0]["tap"] = json!(3), "columns[0].tap");
        let err = format!("{:#}", read_sidecar(Path::new("/nonexistent/features.json")).unwrap_err());
        assert!(err.contains("/nonexistent/features.json") && err.contains("docs/formats.md"), "{err}");
    }
}
