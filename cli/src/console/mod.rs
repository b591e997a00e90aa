//! `mint serve`: the MINT transparency console, where a data owner uploads images and learns,
//! with the caveats that apply, whether the audited models were trained on them.
//!
//! The path of an upload: [`http`] receives the form (bounded, rate-limited, in memory, fair
//! between [`clients`]) → the toolkit's console part (`mint_toolkit::console`: uploads →
//! analysis against the registry's reference) computes the evidence →
//! `mint_toolkit::formats::bundle` signs it for filing with the operator's key, and [`bundle`]
//! (`mint verify-bundle`) checks the signature and recomputes it.

mod budget;
pub mod bundle;
mod clients;
mod http;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use mint_toolkit::attest::OperatorKey;
use mint_toolkit::console::disclosure::Disclosure;
use mint_toolkit::console::registry::{shipped_models, Registry};
use mint_toolkit::console::uploads::Limits;

/// The subfolders of `dir` that hold a `console.json`, sorted by name.
fn registered_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("--models-dir {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("console.json").is_file())
        .collect();
    found.sort();
    anyhow::ensure!(!found.is_empty(), "--models-dir {}: no subfolder holds a console.json", dir.display());
    Ok(found)
}

#[derive(clap::Args)]
/// Serve the transparency console: upload images, learn whether the audited models trained on them.
pub struct Args {
    /// Address to listen on (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8750")]
    listen: String,
    /// A model to serve: its console.json or the folder holding it (repeat for several); the
    /// two shipped models by default.
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// A folder of registered models: every subfolder holding a console.json, by name.
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// Largest upload of one request, in MiB.
    #[arg(long, default_value_t = 32)]
    max_upload_mib: usize,
    /// Most images in one request (an IDX or NPY file counts each of its images).
    #[arg(long, default_value_t = 200)]
    max_images: usize,
    /// Largest width or height of an uploaded image, in pixels.
    #[arg(long, default_value_t = 4096)]
    max_side: u32,
    /// Megapixels of the PNG and JPEG images of one request together (the decoding work it may ask for).
    #[arg(long, default_value_t = 64)]
    max_megapixels: u64,
    /// Seconds one request's images may take to decode.
    #[arg(long, default_value_t = 30)]
    max_analysis_seconds: u64,
    /// Analyses running at once; further requests wait their turn (one per client), up to a
    /// minute. Heavy ones (over a megapixel of decoding) have a lane of their own beside it, of
    /// half as many, at the lowest CPU priority.
    #[arg(long, default_value_t = 2)]
    max_concurrent: usize,
    /// Analyses one client address may ask for per minute.
    #[arg(long, default_value_t = 12)]
    rate_per_minute: u32,
    /// Open connections at most.
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
    /// Open connections one client (an IPv4 address, an IPv6 /64) may hold.
    #[arg(long, default_value_t = 8)]
    max_connections_per_client: usize,
    /// MiB of uploads held in memory at once (arriving, or waiting for their analysis).
    #[arg(long, default_value_t = 256)]
    max_buffered_mib: usize,
    /// Held-out members scored at start-up for each model card's AUC.
    #[arg(long, default_value_t = 1000)]
    card_members: usize,
    /// Threads for the start-up scoring.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The operator's ed25519 key (PKCS#8 PEM, from `mint keygen` or `openssl genpkey
    /// -algorithm ed25519`) that signs the evidence bundles. Without it the console draws a key
    /// that lives as long as the process: its bundles verify only against the fingerprint it
    /// prints at start and shows on its page.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// What the console tells whoever asks: `flags` (calibrated flags per image, set-level
    /// numbers in bands), `sets` (set-level statements only) or `scores` (every score and exact
    /// p-value: a membership oracle for anyone who can reach it; for loopback or a trusted
    /// audience). docs/security.md measures what each leaks.
    #[arg(long, default_value = "flags", value_parser = str::parse::<Disclosure>)]
    disclosure: Disclosure,
    /// The fewest images one analysis answers on.
    #[arg(long, default_value_t = 10)]
    min_set: usize,
    /// Distinct images one client (an IPv4 address, an IPv6 /64) may have analysed a day;
    /// images analysed before count nothing again.
    #[arg(long, default_value_t = 500)]
    daily_images: usize,
    /// Distinct sets one image may be analysed in a day, whoever asks.
    #[arg(long, default_value_t = 5)]
    daily_sets_per_image: usize,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut models = args.models.clone();
    if let Some(dir) = &args.models_dir {
        models.extend(registered_in(dir)?);
    }
    if models.is_empty() {
        models = shipped_models();
    }
    let (signing_key, ephemeral_key) = match &args.signing_key {
        Some(path) => (OperatorKey::load(path)?, false),
        None => (OperatorKey::generate()?, true),
    };
    let listener =
        std::net::TcpListener::bind(&args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let registry = Registry::start(&models, args.card_members, args.threads)?;
    let addr = listener.local_addr()?;
    println!(
        "mint serve: the console is at http://{addr}/ (models: {})",
        registry.entries.iter().map(|e| e.id.as_str()).collect::<Vec<_>>().join(", ")
    );
    // On stderr with the console's other log lines: stdout's one line is the address.
    eprintln!(
        "mint serve: bundles are signed by {} ({})",
        signing_key.public().fingerprint(),
        if ephemeral_key { "a key drawn for this process: give --signing-key to keep one" } else { "--signing-key" }
    );
    std::io::stdout().flush()?;
    let settings = http::Settings {
        max_upload_bytes: args.max_upload_mib.saturating_mul(1 << 20),
        limits: Limits {
            max_images: args.max_images,
            max_side: args.max_side,
            // Eight bytes a pixel (RGBA at 16 bits) for the largest side allowed, at most 1 GiB.
            max_decode_bytes: (u64::from(args.max_side).pow(2) * 8).min(1 << 30),
            max_pixels: args.max_megapixels.saturating_mul(1_000_000),
            max_work: std::time::Duration::from_secs(args.max_analysis_seconds),
        },
        max_concurrent: args.max_concurrent,
        rate_per_minute: args.rate_per_minute,
        max_connections: args.max_connections,
        max_connections_per_client: args.max_connections_per_client,
        max_buffered_bytes: args.max_buffered_mib.saturating_mul(1 << 20),
        signing_key: std::sync::Arc::new(signing_key),
        ephemeral_key,
        disclosure: args.disclosure,
        min_set: args.min_set.max(1),
        daily_images: args.daily_images,
        daily_sets_per_image: args.daily_sets_per_image,
    };
    http::serve(listener, registry, settings)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_models_folder_registers_its_subfolders_with_a_console_json() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let found = registered_in(&shipped).unwrap();
        let names: Vec<_> = found.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["fmnist-generalizing", "fmnist-memorizing"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(registered_in(empty.path()).unwrap_err().to_string().contains("no subfolder"));
    }
}
