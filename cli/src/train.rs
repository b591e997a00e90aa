//! `mint train`: a MINT head from extracted features ([`mint_toolkit::train`]), and the
//! auditor configuration that serves it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use mint_toolkit::descriptor::Descriptor;
use mint_toolkit::train::{self, ServingOptions, TrainOptions};

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

pub fn run(args: Args) -> Result<ExitCode> {
    let (members, non_members) = match (&args.features, &args.members, &args.non_members) {
        (Some(dir), None, None) => (dir.join("head_train_members.npy"), dir.join("head_train_non_members.npy")),
        (None, Some(m), Some(n)) => (m.clone(), n.clone()),
        _ => bail!("give --features DIR, or --members and --non-members"),
    };
    let trained = train::train(&TrainOptions {
        members,
        non_members,
        taps: args.taps,
        recipe: args.recipe,
        seed: args.seed,
        epochs: args.epochs,
        out: args.out,
        python: args.python,
    })?;
    let max_diff = trained.report.tract_max_abs_diff_vs_torch.unwrap_or(f32::NAN);
    println!(
        "{}  {}  (tract vs PyTorch: max |Δ| = {max_diff:.1e})",
        trained.head.sha256(),
        trained.head.path().display()
    );
    if let Some(config_out) = &args.config_out {
        let desc = Descriptor::load(args.model_json.as_ref().expect("required by clap"))?;
        let serving = ServingOptions {
            threshold: args.threshold,
            metrics_listen: args.metrics_listen,
            cohorts: args.cohorts,
            // By default the CPU backend built beside this `mint`.
            backend_library: match args.backend_library {
                Some(l) => l,
                None => std::env::current_exe()?.with_file_name("libmint_backend_cpu.so"),
            },
        };
        train::write_config(config_out, &desc, &trained, &serving)?;
        eprintln!("wrote {}", config_out.display());
    }
    Ok(ExitCode::SUCCESS)
}
