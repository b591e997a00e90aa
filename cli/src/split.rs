//! `mint split`: makes a split file (`mint_toolkit::split`) from a member source and a
//! non-member source.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use mint_toolkit::split::{Balanced, Side, Split};

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
    let split = Split::balanced(&Balanced {
        members: Side { images: args.members, labels: args.members_labels },
        non_members: Side { images: args.non_members, labels: args.non_members_labels },
        per_phase: args.per_phase,
        protocol: args.protocol.clone(),
        description: args.description,
        seed: args.seed,
        base: args.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(),
    })?;
    // What is written is read back with the checks every command makes.
    split.write(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    let per_phase = split.protocol(&args.protocol)?.eval.members.indices.len();
    eprintln!(
        "wrote {}: protocol '{}', {per_phase} members and {per_phase} non-members per phase (head_train, eval), seed {}",
        args.out.display(),
        args.protocol,
        args.seed
    );
    Ok(ExitCode::SUCCESS)
}
