//! `mint evidence`: a fleet's membership evidence per cohort, read through the Prometheus HTTP
//! API ([`mint_toolkit::fleet`] says what is computed and what it assumes).
//!
//! Exit codes: 0 when every `--expect` holds (or none is given), 1 when one does not, 2 on
//! error (an unreachable or malformed Prometheus, a cohort no replica serves).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use mint_toolkit::attest::{self, OperatorKey};
use mint_toolkit::fleet::prometheus::Client;
use mint_toolkit::fleet::{self, Request};
use mint_toolkit::formats::fleet::{FleetEvidence, SignedFleetEvidence};
use mint_toolkit::report::{self, Check};

#[derive(clap::Args)]
/// A fleet's membership evidence per cohort, from every replica's series in Prometheus: anytime-valid e-values, the member-share sequence and certificate, the planned-look tests, e-BH over cohorts.
pub struct Args {
    /// The Prometheus API (also a federation, Thanos, Mimir or Cortex): http://host:9090
    #[arg(long)]
    prometheus: String,
    /// Label matchers of the fleet's series, PromQL syntax without braces.
    #[arg(long, default_value = r#"job=~"mint.*""#)]
    selector: String,
    /// How far back to read, in seconds (from the replicas' start, if they are younger).
    #[arg(long, default_value_t = 3600.0)]
    range: f64,
    /// End of the range, Unix seconds (default: now).
    #[arg(long)]
    end: Option<f64>,
    /// Step of the range in seconds: at least the scrape interval (each step is one round of
    /// the scores e-process).
    #[arg(long, default_value_t = 15.0)]
    step: f64,
    /// Level of each cohort's decision: evidence when its e-value reaches 1/alpha.
    #[arg(long, default_value_t = 0.01)]
    alpha: f64,
    /// False discovery rate over the suspect cohorts (e-BH).
    #[arg(long, default_value_t = 0.05)]
    fdr: f64,
    /// A file holding a bearer token for the API.
    #[arg(long)]
    bearer_token_file: Option<PathBuf>,
    /// Deadline of each query, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Write the report here as JSON (docs/schemas/fleet_evidence.schema.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a JUnit report of the expectations here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// COHORT=evidence or COHORT=no-evidence: fail (exit 1) unless the cohort's e-value does
    /// (or does not) reach 1/alpha. Repeatable.
    #[arg(long = "expect", value_name = "COHORT=evidence|no-evidence")]
    expect: Vec<String>,
    /// The ed25519 key (PKCS#8 PEM, `mint keygen`) that signs the report for --attest and --attest-log.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// Write the report signed (an in-toto statement in a DSSE envelope) here.
    #[arg(long, requires = "signing_key")]
    attest: Option<PathBuf>,
    /// Append the report, signed and chained to the previous one, to this log (created if
    /// missing; one envelope per line): `mint verify` then shows whether any look was dropped.
    #[arg(long, requires = "signing_key")]
    attest_log: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let expectations = args
        .expect
        .iter()
        .map(|e| match e.split_once('=') {
            Some((cohort, "evidence")) => Ok((cohort.to_string(), true)),
            Some((cohort, "no-evidence")) => Ok((cohort.to_string(), false)),
            _ => bail!("--expect {e}: expected COHORT=evidence or COHORT=no-evidence"),
        })
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(args.alpha > 0.0 && args.alpha < 1.0, "--alpha must lie in (0, 1)");
    anyhow::ensure!(args.fdr > 0.0 && args.fdr < 1.0, "--fdr must lie in (0, 1)");
    let token = match &args.bearer_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--bearer-token-file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let end = match args.end {
        Some(end) => end,
        None => SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_secs_f64(),
    };
    let client = Client::new(&args.prometheus, token, Duration::from_secs(args.timeout));
    let request = Request {
        selector: args.selector.clone(),
        start: end - args.range,
        end,
        step: args.step,
        alpha: args.alpha,
        fdr: args.fdr,
    };
    // The key is read before Prometheus is asked, so that a bad key costs no queries.
    let signing_key = args.signing_key.as_deref().map(OperatorKey::load).transpose()?;
    let evidence = fleet::read(&client, &args.prometheus, &request)?;

    let mut checks = Vec::new();
    for (cohort, want) in &expectations {
        let c = evidence.cohort(cohort).with_context(|| format!("--expect {cohort}"))?;
        let found = c.e_value * args.alpha >= 1.0;
        checks.push(Check {
            name: format!(
                "cohort {cohort}: {} (e-value {} 1/alpha = {})",
                if *want { "evidence of members" } else { "no evidence of members" },
                if *want { ">=" } else { "<" },
                1.0 / args.alpha
            ),
            passed: found == *want,
            message: format!("e-value {:.3e} over {} replicas, {} samples", c.e_value, c.replicas, c.audited),
        });
    }
    let summary = render(&evidence);
    println!("{summary}");
    for c in &checks {
        println!("  [{}] {}: {}", if c.passed { "pass" } else { "FAIL" }, c.name, c.message);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&evidence)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(key) = &signing_key {
        let issued_at = SystemTime::now();
        if let Some(path) = &args.attest {
            let statement = SignedFleetEvidence::statement(evidence.clone(), issued_at, &key.public(), None);
            let envelope = attest::seal(&statement, key)?;
            std::fs::write(path, serde_json::to_string_pretty(&envelope)? + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            println!("  signed by {}: {}", key.public().fingerprint(), path.display());
        }
        if let Some(path) = &args.attest_log {
            let link = attest::chain::append(path, key, |link| {
                SignedFleetEvidence::statement(evidence.clone(), issued_at, &key.public(), Some(link))
            })?;
            println!("  signed by {}: entry {} of {}", key.public().fingerprint(), link.sequence, path.display());
        }
    }
    if let Some(path) = &args.junit {
        let xml = report::junit("mint fleet evidence", &checks, started.elapsed().as_secs_f64(), &summary);
        std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if checks.iter().all(|c| c.passed) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The report for people: one line per cohort.
fn render(e: &FleetEvidence) -> String {
    let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3e}"));
    let mut s = format!(
        "fleet evidence: {} replicas ({}), {:.0} s to {:.0} s in steps of {} s; alpha {}, FDR {} (e-BH)\n",
        e.replicas, e.selector, e.start, e.end, e.step, e.alpha, e.fdr
    );
    if e.calibration.is_none() {
        s.push_str("  uncalibrated: no flag e-process, no member share, no certificate (mint eval --calibrate)\n");
    }
    s.push_str(&format!(
        "  {:<14} {:>8} {:>8} {:>10} {:>10} {:>10} {:>15} {:>11}  {}\n",
        "cohort",
        "samples",
        "flagged",
        "e flags",
        "e scores",
        "e",
        "member share",
        "certificate",
        "planned look (rank p)"
    ));
    for c in &e.cohorts {
        let share = c.member_fraction.map_or("-".to_string(), |[lo, hi]| {
            if lo <= 0.0 && hi >= 1.0 {
                "not identifiable".to_string()
            } else {
                format!("[{lo:.2}, {hi:.2}]")
            }
        });
        let cert = c.certificate.map_or("-".to_string(), |v| format!("< {:.1}%", 100.0 * v));
        s.push_str(&format!(
            "  {:<14} {:>8} {:>8} {:>10} {:>10} {:>10.3e} {:>15} {:>11}  {}{}\n",
            c.cohort,
            c.audited,
            c.flagged,
            opt(c.flags.map(|f| f.e_value)),
            opt(c.scores.map(|f| f.process.e_value)),
            c.e_value,
            share,
            cert,
            opt(c.planned_look.rank_p_value),
            if c.discovered { "  DISCOVERED" } else { "" },
        ));
    }
    if e.discoveries.is_empty() {
        s.push_str("  e-BH: no suspect cohort holds members at this FDR");
    } else {
        s.push_str(&format!("  e-BH: {} hold members (FDR {})", e.discoveries.join(", "), e.fdr));
    }
    s
}
