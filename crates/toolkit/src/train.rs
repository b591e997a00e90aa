//! Training a MINT head on extracted features, and the auditor configuration that serves it.
//!
//! Training runs in PyTorch through the recipes of the `mint_recipes` package
//! (crates/toolkit/recipes: `train_head`, `train_cnn_head`; embedded here, run with the caller's
//! Python, which needs `torch` and `onnx`): auditors train heads in PyTorch anyway, and its ONNX exporter is the
//! reference. What comes back is then checked: the head must load in the library's runtime
//! and give PyTorch's scores within 1e-5 on the reference rows the recipe saved, or training
//! fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use mint_audit::config::ScoreOutput;
use mint_head::HeadModel;
use serde_json::{json, Value};

use crate::descriptor::Descriptor;
use crate::extract::{read_npy, write_npy};
use crate::formats::features::{FeaturesSidecar, Layout, Selection};
use crate::formats::train_report::{Reference, TrainReport};
use crate::paths::relative_to;

/// The `mint_recipes` package (crates/toolkit/recipes), written into a temporary folder and
/// run from there: the recipes and what they import.
const RECIPES: [(&str, &str); 5] = [
    ("__init__.py", include_str!("../recipes/mint_recipes/__init__.py")),
    ("data.py", include_str!("../recipes/mint_recipes/data.py")),
    ("fit.py", include_str!("../recipes/mint_recipes/fit.py")),
    ("train_head.py", include_str!("../recipes/mint_recipes/train_head.py")),
    ("train_cnn_head.py", include_str!("../recipes/mint_recipes/train_cnn_head.py")),
];

/// Largest difference allowed between the exported head's scores in our runtime and PyTorch's.
pub const MAX_RUNTIME_DIFF: f32 = 1e-5;

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Member features, NPY (its sidecar beside it, [`FeaturesSidecar::path_for`]).
    pub members: PathBuf,
    /// Non-member features, NPY.
    pub non_members: PathBuf,
    /// Taps to train on, comma-separated, or `all` (Vanilla heads).
    pub taps: String,
    /// `standardized` or `paper`.
    pub recipe: String,
    pub seed: u64,
    /// 0: the recipe's default.
    pub epochs: u32,
    /// The ONNX head to write; the report goes to `<out>.json`.
    pub out: PathBuf,
    /// Python with PyTorch and onnx.
    pub python: PathBuf,
}

/// A head trained, exported and checked.
#[derive(Debug)]
pub struct TrainedHead {
    pub head: HeadModel,
    pub report: TrainReport,
    /// The taps the head reads.
    pub taps: Vec<String>,
    /// The features' layout: a Vanilla head or a CNN head on full maps.
    pub layout: Layout,
}

/// Trains a head with the recipe that fits the features' layout, checks it in our runtime and
/// writes the report beside it.
pub fn train(opts: &TrainOptions) -> Result<TrainedHead> {
    let sidecar = FeaturesSidecar::load(&FeaturesSidecar::path_for(&opts.members))?;
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match sidecar.kind {
        Layout::Vanilla => train_vanilla(opts, &sidecar),
        Layout::FullMap => train_cnn(opts, &sidecar),
    }
}

fn train_vanilla(opts: &TrainOptions, sidecar: &FeaturesSidecar) -> Result<TrainedHead> {
    let sel = sidecar.select(&opts.taps)?;
    let tmp = recipes_folder()?;
    let m = tmp.path().join("members.npy");
    let n = tmp.path().join("non_members.npy");
    let width = take_columns(&opts.members, &sel, &m)?;
    take_columns(&opts.non_members, &sel, &n)?;

    let mut cmd = recipe_command(opts, tmp.path(), "train_head", &m, &n);
    if let Some((a, b)) = sel.outcome {
        cmd.arg("--outcome-columns").arg(format!("{a}:{b}"));
    }
    eprintln!("training a '{}' head on {} ({} features)...", opts.recipe, sel.taps.join("+"), width);
    run_recipe(cmd, &opts.python)?;

    let head = HeadModel::load(&opts.out, None, &[width], ScoreOutput::Probability)?;
    let report = TrainReport::load(&report_path(&opts.out))?;
    let Reference::Rows { inputs, scores } = &report.reference else {
        anyhow::bail!("the recipe's report has no reference rows");
    };
    ensure!(inputs.iter().all(|row| row.len() == width), "reference rows are not {width} wide");
    let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
    let max_diff = max_abs_diff(&head, &flat, scores)?;
    finish(opts, head, report, sel.taps, max_diff, Layout::Vanilla)
}

fn train_cnn(opts: &TrainOptions, sidecar: &FeaturesSidecar) -> Result<TrainedHead> {
    let shape = &sidecar.record_shape;
    let tap = sidecar.taps[0].clone();
    let tmp = recipes_folder()?;
    eprintln!("training a '{}' CNN head on the full maps of {tap} {shape:?}...", opts.recipe);
    run_recipe(recipe_command(opts, tmp.path(), "train_cnn_head", &opts.members, &opts.non_members), &opts.python)?;

    let head = HeadModel::load(&opts.out, None, shape, ScoreOutput::Probability)?;
    let path = report_path(&opts.out);
    let report = TrainReport::load(&path)?;
    let Reference::Maps { maps, scores } = &report.reference else {
        anyhow::bail!("the CNN recipe's report names no reference maps");
    };
    let (ref_shape, data) = read_npy(&path.with_file_name(maps))?;
    ensure!(ref_shape.get(1..) == Some(&shape[..]), "reference maps are {ref_shape:?}, not [n, {shape:?}]");
    let max_diff = max_abs_diff(&head, &data, scores)?;
    finish(opts, head, report, vec![tap], max_diff, Layout::FullMap)
}

/// A temporary folder holding the `mint_recipes` package.
fn recipes_folder() -> Result<tempfile::TempDir> {
    let tmp = tempfile::tempdir()?;
    let package = tmp.path().join("mint_recipes");
    std::fs::create_dir(&package)?;
    for (name, text) in RECIPES {
        std::fs::write(package.join(name), text)?;
    }
    Ok(tmp)
}

/// `python -m mint_recipes.<recipe>`, the package found in `folder`.
fn recipe_command(opts: &TrainOptions, folder: &Path, recipe: &str, members: &Path, non_members: &Path) -> Command {
    let mut cmd = Command::new(&opts.python);
    // PyTorch's exporter warns about its own internals on every run; the recipe's report is
    // what the auditor reads.
    cmd.env("PYTHONWARNINGS", "ignore::UserWarning");
    // The package first, so that an installed `mint_recipes` of another version is not run.
    let path = std::env::var_os("PYTHONPATH").unwrap_or_default();
    let mut paths = vec![folder.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    cmd.env("PYTHONPATH", std::env::join_paths(paths).unwrap_or_else(|_| folder.as_os_str().to_owned()));
    cmd.arg("-m")
        .arg(format!("mint_recipes.{recipe}"))
        .arg("--members")
        .arg(members)
        .arg("--non-members")
        .arg(non_members)
        .arg("--out")
        .arg(&opts.out);
    cmd.args(["--recipe", &opts.recipe, "--seed", &opts.seed.to_string(), "--epochs", &opts.epochs.to_string()]);
    cmd
}

fn run_recipe(mut cmd: Command, python: &Path) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {}", python.display()))?;
    ensure!(status.success(), "the training recipe failed ({status})");
    Ok(())
}

fn report_path(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.json", out.display()))
}

/// Records the runtime-versus-PyTorch check in the report (refusing a head that disagrees by
/// more than [`MAX_RUNTIME_DIFF`]).
fn finish(
    opts: &TrainOptions,
    head: HeadModel,
    mut report: TrainReport,
    taps: Vec<String>,
    max_diff: f32,
    layout: Layout,
) -> Result<TrainedHead> {
    ensure!(
        max_diff <= MAX_RUNTIME_DIFF,
        "the exported head's scores differ from PyTorch's by {max_diff:e} (> {MAX_RUNTIME_DIFF:e})"
    );
    report.taps = taps.clone();
    report.sha256 = Some(head.sha256().to_string());
    report.tract_max_abs_diff_vs_torch = Some(max_diff);
    report.write(&report_path(&opts.out))?;
    Ok(TrainedHead { head, report, taps, layout })
}

/// Copies the selected columns of a features file into a new one; returns their width.
fn take_columns(path: &Path, sel: &Selection, out: &Path) -> Result<usize> {
    let (shape, data) = read_npy(path)?;
    ensure!(shape.len() == 2, "{}: features must be [n, F], not {shape:?}", path.display());
    let (n, f) = (shape[0], shape[1]);
    let needed = sel.ranges.iter().map(|&(_, b)| b).max().unwrap_or(0);
    ensure!(f >= needed, "{}: features are [n, {f}], but their sidecar puts columns up to {needed}", path.display());
    let width = sel.width();
    let mut picked = Vec::with_capacity(n * width);
    for row in data.chunks(f) {
        for &(a, b) in &sel.ranges {
            picked.extend_from_slice(&row[a..b]);
        }
    }
    write_npy(out, &[n, width], &picked)?;
    Ok(width)
}

/// Largest |score − expected| of `head` over reference inputs stored back to back.
fn max_abs_diff(head: &HeadModel, inputs: &[f32], expected: &[f32]) -> Result<f32> {
    let mut scores = Vec::new();
    head.runner()?.score(inputs, expected.len(), &mut scores)?;
    Ok(scores.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max))
}

/// Where a trained head is served from: its own runtime (Vanilla) or a backend plugin (CNN).
#[derive(Debug, Clone)]
pub struct ServingOptions {
    /// Decision threshold.
    pub threshold: f32,
    /// Address of the `/metrics` endpoint (off when `None`).
    pub metrics_listen: Option<String>,
    /// Cohorts declared besides `default`.
    pub cohorts: Vec<String>,
    /// Backend plugin for a CNN head: a bare name is kept (found beside the library at run
    /// time), a path is written relative to the configuration.
    pub backend_library: PathBuf,
}

/// Writes an auditor configuration serving `trained` on the model of `desc`, once the library
/// has accepted it.
pub fn write_config(path: &Path, desc: &Descriptor, trained: &TrainedHead, serving: &ServingOptions) -> Result<()> {
    let base = path.parent().unwrap_or(Path::new("."));
    let head_path = relative_to(trained.head.path(), base);
    let head = match trained.layout {
        Layout::Vanilla => json!({"kind": "vanilla", "path": head_path, "sha256": trained.head.sha256(),
                                  "threshold": serving.threshold, "taps": trained.taps}),
        Layout::FullMap => {
            let l = &serving.backend_library;
            let library = if l.components().count() == 1 { l.display().to_string() } else { relative_to(l, base) };
            json!({
                "kind": "cnn",
                "tap": trained.taps[0],
                "threshold": serving.threshold,
                "backend": {"library": library, "config": {"head": head_path, "sha256": trained.head.sha256()}},
            })
        }
    };
    let mut config = json!({
        "model": {
            "id": desc.model.id,
            "version": desc.model.version,
            "input_shape": desc.input_shape(),
            "onnx": relative_to(desc.onnx(), base),
        },
        "taps": desc.taps.iter().map(tap_json).collect::<Vec<_>>(),
        "head": head,
    });
    if let Some(listen) = &serving.metrics_listen {
        config["metrics"] = json!({"http": {"listen": listen}});
    }
    if !serving.cohorts.is_empty() {
        config["cohorts"] = json!(serving.cohorts);
    }
    let text = serde_json::to_string_pretty(&config)?;
    // The reader checks the writer: a configuration the library refuses is never written.
    mint_audit::Config::from_json(&text, base)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A tap as an auditor configuration writes it.
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
