//! `mint split`: makes a split file (`mint_toolkit::split`) from a member source and a
//! non-member source.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{ensure, Context, Result};
use serde_json::json;

use mint_toolkit::data;
use mint_toolkit::roc::SplitMix;
use mint_toolkit::split::{sha256_of, Split, SPLIT_VERSION};

#[derive(clap::Args)]
/// Make a split file from a member source and a non-member source: balanced (as many
/// non-members as members in each phase), seeded, the sources pinned by sha256.
pub struct Args {
    /// Samples known to be in the audited model's training set (IDX, NPY or an image folder).
    #[arg(long)]
    members: PathBuf,
    /// Samples known not to be (same formats).
    #[arg(long)]
    non_members: PathBuf,
    /// Class labels of the members (IDX or NPY), for the loss baseline.
    #[arg(long)]
    members_labels: Option<PathBuf>,
    /// Class labels of the non-members (IDX or NPY).
    #[arg(long)]
    non_members_labels: Option<PathBuf>,
    /// Samples of each class (members, non-members) per phase; default: as many as the smaller
    /// source allows, half to each phase.
    #[arg(long)]
    per_phase: Option<usize>,
    /// The protocol's name.
    #[arg(long, default_value = "default")]
    protocol: String,
    /// What the protocol compares, for reports (e.g. "members against held-out photos of the
    /// same cameras").
    #[arg(long, default_value = "members against non-members")]
    description: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The split file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let base = args.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let mut sources = serde_json::Map::new();
    let mut counts = Vec::new();
    for (name, images, labels, flag) in [
        ("members", &args.members, &args.members_labels, "--members"),
        ("non_members", &args.non_members, &args.non_members_labels, "--non-members"),
    ] {
        let n = data::count(images).with_context(|| flag.to_string())?;
        let mut source =
            json!({"images": mint_toolkit::paths::relative_to(images, &base), "sha256": sha256_of(images)?});
        if let Some(labels) = labels {
            data::load_labels(labels, n).with_context(|| format!("{flag}-labels"))?;
            source["labels"] = json!(mint_toolkit::paths::relative_to(labels, &base));
            source["labels_sha256"] = json!(sha256_of(labels)?);
        }
        sources.insert(name.to_string(), source);
        counts.push(n);
    }
    let available = counts[0].min(counts[1]) / 2;
    let per_phase = args.per_phase.unwrap_or(available);
    ensure!(
        per_phase >= 1 && per_phase <= available,
        "--per-phase {per_phase}: the smaller source ({} samples) allows 1 to {available} per phase (two disjoint phases)",
        counts[0].min(counts[1])
    );
    let draw = |n: usize, salt: u64| {
        let mut order: Vec<usize> = (0..n).collect();
        SplitMix::new(args.seed ^ salt).shuffle(&mut order);
        let (mut train, mut eval) = (order[..per_phase].to_vec(), order[per_phase..2 * per_phase].to_vec());
        train.sort_unstable();
        eval.sort_unstable();
        (train, eval)
    };
    let (m_train, m_eval) = draw(counts[0], 0x6d65_6d62);
    let (n_train, n_eval) = draw(counts[1], 0x6e6f_6e6d);
    let split = json!({
        "format": "mint-split",
        "version": SPLIT_VERSION,
        "sources": sources,
        "protocols": {
            args.protocol.clone(): {
                "description": args.description,
                "head_train": {"members": {"source": "members", "indices": m_train},
                               "non_members": {"source": "non_members", "indices": n_train}},
                "eval": {"members": {"source": "members", "indices": m_eval},
                         "non_members": {"source": "non_members", "indices": n_eval}},
            }
        },
        "made_by": {"command": "mint split", "seed": args.seed, "per_phase": per_phase},
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&split)?)
        .with_context(|| format!("writing {} (--out)", args.out.display()))?;
    // What was written must read back: the same checks every command makes.
    Split::load(&args.out)?;
    eprintln!(
        "wrote {}: protocol '{}', {per_phase} members and {per_phase} non-members per phase (head_train, eval), seed {}",
        args.out.display(),
        args.protocol,
        args.seed
    );
    Ok(ExitCode::SUCCESS)
}
