//! The fleet evidence report `mint evidence --json` writes (schema
//! docs/schemas/fleet_evidence.schema.json).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The value of `format`.
pub const FLEET_FORMAT: &str = "mint-fleet-evidence/1";

/// An e-process read at the end of the range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EProcess {
    /// The e-value at the end (1 at start).
    pub e_value: f64,
    /// `min(1, 1 / the largest e-value over the range)`: a p-value valid at every look.
    pub anytime_p_value: f64,
}

/// The scores e-process, and how many scrape intervals bet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScoresEvidence {
    #[serde(flatten)]
    pub process: EProcess,
    /// Scrape intervals in which the cohort and the reference both had new samples.
    pub rounds: u64,
}

/// The fixed-sample tests at the end of the range: valid for one look planned in advance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlannedLook {
    /// Binomial test of the flags against the calibrated FPR's upper bound (calibrated only).
    pub binomial_p_value: Option<f64>,
    /// Mann-Whitney test of the cohort's bins against the reference's (not for the reference).
    pub rank_z: Option<f64>,
    pub rank_p_value: Option<f64>,
    pub auc: Option<f64>,
}

/// One cohort's evidence over the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CohortFleetEvidence {
    pub cohort: String,
    /// Replicas that served the cohort.
    pub replicas: usize,
    pub audited: u64,
    pub flagged: u64,
    /// Audited samples per score bucket (the `le` bounds of the report), summed over replicas.
    pub bins: Vec<u64>,
    /// Flags against the calibrated FPR's upper bound (calibrated only).
    pub flags: Option<EProcess>,
    /// Scores against the reference cohort's, one round per scrape interval (not for the
    /// reference itself, nor without one).
    pub scores: Option<ScoresEvidence>,
    /// The e-value decisions use: the average of the cohort's e-values (an e-value itself).
    pub e_value: f64,
    /// 95% confidence sequence of the share of members (calibrated only).
    pub member_fraction: Option<[f64; 2]>,
    /// Fewer than this share of the cohort were training members, at 95%; absent when the head
    /// cannot certify.
    pub certificate: Option<f64>,
    pub planned_look: PlannedLook,
    /// Whether e-BH at the report's `fdr` counts the cohort as holding members.
    pub discovered: bool,
}

/// The calibration every replica serves with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetCalibration {
    /// The flag e-process's null: the calibrated FPR's upper bound.
    pub fpr_high: f64,
    pub fpr_estimate: f64,
    pub non_members: u64,
    pub tpr_estimate: f64,
    pub members: u64,
}

/// `mint evidence`'s report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetEvidence {
    /// [`FLEET_FORMAT`].
    pub format: String,
    /// The Prometheus API read, and the selector of the fleet's series.
    pub prometheus: String,
    pub selector: String,
    /// The range read (Unix seconds) and its step (the scrape interval's batching).
    pub start: f64,
    pub end: f64,
    pub step: f64,
    /// Level of each cohort's decision (e-value at least 1/alpha).
    pub alpha: f64,
    /// Level of the false discovery rate over the suspect cohorts (e-BH).
    pub fdr: f64,
    /// Replicas seen.
    pub replicas: usize,
    pub calibration: Option<FleetCalibration>,
    /// Upper bounds of the score buckets (`le`), shared by every replica.
    pub buckets: Vec<f64>,
    pub cohorts: Vec<CohortFleetEvidence>,
    /// The suspect cohorts e-BH counts as holding members.
    pub discoveries: Vec<String>,
}

impl FleetEvidence {
    /// The evidence on `cohort`; an error naming the cohorts the replicas serve when none
    /// serves it (a cohort the configuration does not declare, or a typo).
    pub fn cohort(&self, cohort: &str) -> anyhow::Result<&CohortFleetEvidence> {
        self.cohorts.iter().find(|c| c.cohort == cohort).ok_or_else(|| {
            let served: Vec<&str> = self.cohorts.iter().map(|c| c.cohort.as_str()).collect();
            anyhow::anyhow!("no replica serves a cohort '{cohort}' (they serve: {})", served.join(", "))
        })
    }
}

/// The predicate type of a signed fleet report.
pub const SIGNED_FLEET_PREDICATE_TYPE: &str = "https://mint-audit.dev/attestations/fleet-evidence/v1";

/// A fleet report as signed by the regulator's (or auditor's) key: the predicate of an in-toto
/// statement whose subject is the fleet (its API and selector, by the report's sha256). Issued
/// alone (`mint evidence --attest`) or as an entry of a chained log (`--attest-log`), which
/// shows a later reader that no look was dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedFleetEvidence {
    /// When the report was signed, `YYYY-MM-DDTHH:MM:SSZ` (UTC).
    pub issued_at: String,
    pub report: FleetEvidence,
    /// The entry's place in its log; absent for a report signed alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<mint_attest::chain::Link>,
    pub signer: mint_attest::Signer,
}

impl SignedFleetEvidence {
    /// The statement of `report`, as of `issued_at`, signed by `signer`, at `chain` in a log.
    pub fn statement(
        report: FleetEvidence,
        issued_at: std::time::SystemTime,
        signer: &mint_attest::PublicKey,
        chain: Option<mint_attest::chain::Link>,
    ) -> mint_attest::Statement<SignedFleetEvidence> {
        use sha2::{Digest, Sha256};
        let digest = format!("{:x}", Sha256::digest(serde_json::to_vec(&report).expect("a report is JSON")));
        let subject = mint_attest::Subject::sha256(format!("{} {{{}}}", report.prometheus, report.selector), digest);
        let predicate = SignedFleetEvidence {
            issued_at: super::bundle::rfc3339(issued_at),
            report,
            chain,
            signer: mint_attest::Signer::of(signer),
        };
        mint_attest::Statement::new(vec![subject], SIGNED_FLEET_PREDICATE_TYPE, predicate)
    }
}
