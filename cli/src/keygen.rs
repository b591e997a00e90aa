//! `mint keygen`: an operator's ed25519 signing key for the console's bundles and the fleet
//! command's signed reports.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use mint_toolkit::attest::OperatorKey;

#[derive(clap::Args)]
/// Make an ed25519 signing key (PKCS#8 PEM, owner-only) and its public key beside it (.pub).
pub struct Args {
    /// Where to write the private key; it must not exist. The public key goes to OUT.pub.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let key = OperatorKey::generate()?;
    key.save(&args.out)?;
    let mut public_path = args.out.clone().into_os_string();
    public_path.push(".pub");
    let public_path = PathBuf::from(public_path);
    std::fs::write(&public_path, key.public().to_pem())
        .with_context(|| format!("writing {}", public_path.display()))?;
    println!("wrote {} (private, keep it) and {} (public)", args.out.display(), public_path.display());
    println!("fingerprint {}", key.public().fingerprint());
    Ok(ExitCode::SUCCESS)
}
