//! `mint conformance`: a kit for a vendor's CI that shows its integration hands the auditor
//! what the auditor was built for.
//!
//! - `mint conformance write` runs the audited model over a few inputs through the toolkit
//!   (the library's own capture code, as `mint extract`) and writes the inputs, the records the
//!   head should receive per tap, and the scores it should give: golden vectors.
//! - The vendor feeds those inputs, with sample ids 0..N−1, through its own serving path
//!   (C API, Python, PyTorch hooks), with `"conformance": {"record": FILE}` in the auditor's
//!   configuration: the library then writes what it received and scored at close.
//! - `mint conformance check` compares the two and names the tap, channel and sample that
//!   differ, with the likely cause (wrong layer, layout or dtype, input preprocessing, a stale
//!   head, missing samples); JUnit for CI; exit 1 when anything differs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use mint_toolkit::conformance::{self, KitRequest, Tolerance};
use mint_toolkit::report;

#[derive(clap::Args)]
/// Golden vectors for a vendor's CI: write a kit from an auditor configuration, check what an integration recorded.
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Write(WriteArgs),
    Check(CheckArgs),
}

#[derive(clap::Args)]
/// Write a conformance kit: inputs, the records the head should receive, the scores it should give.
struct WriteArgs {
    /// The auditor configuration (with `model.onnx`, `model.input_shape` and tap `tensor`s).
    #[arg(long)]
    config: PathBuf,
    /// The inputs: IDX file, NPY array or folder of images (the first --samples are used).
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 32)]
    samples: usize,
    /// The kit's folder.
    #[arg(long)]
    out: PathBuf,
    /// Tolerance on each record value: |received − expected| ≤ abs + rel·|expected|.
    #[arg(long, default_value_t = 1e-3)]
    record_rel: f64,
    #[arg(long, default_value_t = 1e-4)]
    record_abs: f64,
    /// Tolerance on each score (absolute).
    #[arg(long, default_value_t = 1e-3)]
    score_abs: f64,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(clap::Args)]
/// Check an integration's recording against a kit; exit 1 when anything differs.
struct CheckArgs {
    /// The kit's folder (kit.json).
    #[arg(long)]
    kit: PathBuf,
    /// The file the library wrote (`conformance.record` in the auditor's configuration).
    #[arg(long)]
    recording: PathBuf,
    /// Write a JUnit report here.
    #[arg(long)]
    junit: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Write(a) => write(a),
        Command::Check(a) => check(a),
    }
}

fn write(args: WriteArgs) -> Result<ExitCode> {
    let kit = conformance::write_kit(&KitRequest {
        config: args.config,
        data: args.data,
        samples: args.samples,
        out: args.out.clone(),
        tolerance: Tolerance { record_rel: args.record_rel, record_abs: args.record_abs, score_abs: args.score_abs },
        threads: args.threads,
    })?;
    println!(
        "conformance kit for {} ({} head {}): {} samples, records of {} values ({} taps), in {}",
        kit.model.id,
        kit.head.kind,
        &kit.head.sha256[..12],
        kit.samples,
        kit.expected.width,
        kit.layout.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn check(args: CheckArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let (kit, checks) = conformance::check(&args.kit, &args.recording)?;
    let passed = checks.iter().all(|c| c.passed);
    let model = &kit.model.id;
    let summary = format!(
        "conformance of {model}: {} ({} checks, {} failed)",
        if passed { "PASS" } else { "FAIL" },
        checks.len(),
        checks.iter().filter(|c| !c.passed).count()
    );
    println!("{summary}");
    for c in &checks {
        println!("  [{}] {}: {}", if c.passed { "pass" } else { "FAIL" }, c.name, c.message);
    }
    if let Some(path) = &args.junit {
        let xml = report::junit(&format!("{model} conformance"), &checks, started.elapsed().as_secs_f64(), &summary);
        std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
