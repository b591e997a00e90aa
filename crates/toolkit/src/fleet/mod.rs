//! A fleet's membership evidence, from the series every replica exports, read through the
//! Prometheus HTTP API (`mint evidence`).
//!
//! Each replica exports, per cohort, its scores as a histogram on one grid (the
//! configuration's `mint_membership_score` buckets, the same on every replica of a
//! configuration) and its flags (`mint_cohort_flagged_total`): counts, which add across
//! replicas without loss. From the range of those counters this computes, per cohort:
//!
//! - the flag e-process on the summed counts: exactly the value one process that had served
//!   every request would show, whatever the split and the scrape interval;
//! - the scores e-process, one round per step of the range (a scrape interval's increments
//!   over the fleet): valid, but it depends on that batching (the library's own rounds are of
//!   16 samples);
//! - the member-share confidence sequence and the non-membership certificate;
//! - the fixed-sample tests for one planned look at the end (binomial, rank), bit for bit
//!   those of one process on the whole stream, since they depend on the summed bins only;
//! - e-BH over the suspect cohorts at level `fdr`.
//!
//! Counter resets (a replica restarted) are taken as new counts, as Prometheus's `increase`
//! does, without its extrapolation.

pub mod prometheus;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, ensure, Context, Result};
use mint_audit::evidence::anytime::{self, RateCounts, ScoresEProcess, CS_ALPHA};
use mint_audit::evidence::stats;

use crate::formats::fleet::{
    CohortFleetEvidence, EProcess, FleetCalibration, FleetEvidence, PlannedLook, ScoresEvidence, FLEET_FORMAT,
};
use prometheus::{Client, Series};

/// A series' labels.
type Labels = BTreeMap<String, String>;
/// A replica (its labels) and a cohort.
type ReplicaCohort = (Labels, String);

/// The cohort of known non-members the others are compared with.
const REFERENCE: &str = "reference";
/// Ordinary traffic: reported, not a suspect cohort of the e-BH procedure.
const DEFAULT: &str = "default";

/// What to read.
#[derive(Debug, Clone)]
pub struct Request {
    /// Label matchers of the fleet's series, without braces: `job="mint"`.
    pub selector: String,
    /// The range (Unix seconds) and its step in seconds (at least the scrape interval).
    pub start: f64,
    pub end: f64,
    pub step: f64,
    /// Level of each cohort's decision.
    pub alpha: f64,
    /// Level of the false discovery rate over the suspect cohorts.
    pub fdr: f64,
}

/// Labels that tell a replica's series apart, not replicas.
const SERIES_LABELS: [&str; 6] = ["__name__", "cohort", "le", "rate", "bound", "set"];

/// The labels that name a replica: every label but the metric's name and those of the series
/// within a replica.
fn replica_of(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().filter(|(k, _)| !SERIES_LABELS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn label<'a>(s: &'a Series, name: &str, query: &str) -> Result<&'a str> {
    s.labels
        .get(name)
        .map(String::as_str)
        .with_context(|| format!("{query}: a series without a `{name}` label: {:?}", s.labels))
}

/// A counter's increments at each of `times`, resets taken as new counts.
fn increments(points: &[(f64, f64)], times: &[f64]) -> Vec<u64> {
    let mut out = vec![0u64; times.len()];
    let mut last: Option<f64> = None;
    let mut at = 0;
    for &(t, v) in points {
        while at < times.len() && times[at] < t {
            at += 1;
        }
        if at == times.len() || !v.is_finite() {
            break;
        }
        let inc = match last {
            Some(l) if v >= l => v - l,
            _ => v,
        };
        out[at] = inc.round() as u64;
        last = Some(v);
    }
    out
}

/// Reads the fleet's series and computes its evidence.
pub fn read(client: &Client, prometheus: &str, request: &Request) -> Result<FleetEvidence> {
    ensure!(
        request.end > request.start,
        "the range is empty: end {} is not after start {}",
        request.end,
        request.start
    );
    ensure!(request.step > 0.0, "the step must be positive");
    let points = (request.end - request.start) / request.step;
    ensure!(points <= 11_000.0, "{points:.0} points per series: Prometheus answers at most 11,000; use a longer step");
    let sel = &request.selector;
    let buckets =
        client.range(&format!("mint_membership_score_bucket{{{sel}}}"), request.start, request.end, request.step)?;
    let flagged =
        client.range(&format!("mint_cohort_flagged_total{{{sel}}}"), request.start, request.end, request.step)?;
    ensure!(
        !buckets.is_empty(),
        "no mint_membership_score_bucket series match {{{sel}}} between {} and {}: is the selector right, and are the replicas scraped?",
        request.start,
        request.end
    );
    let rates = client.instant(&format!("mint_calibration_rate{{{sel}}}"), request.end)?;
    let samples = client.instant(&format!("mint_calibration_samples{{{sel}}}"), request.end)?;
    let calibration = calibration_of(&rates, &samples)?;
    let mut evidence = compute(&buckets, &flagged, calibration, request)?;
    evidence.prometheus = prometheus.to_string();
    Ok(evidence)
}

/// The calibration every replica reports; replicas that disagree are not one configuration.
fn calibration_of(
    rates: &[(BTreeMap<String, String>, f64)],
    samples: &[(BTreeMap<String, String>, f64)],
) -> Result<Option<FleetCalibration>> {
    let mut seen: BTreeMap<BTreeMap<String, String>, BTreeMap<String, f64>> = BTreeMap::new();
    for (labels, v) in rates {
        let key = format!(
            "{}_{}",
            labels.get("rate").map_or("", String::as_str),
            labels.get("bound").map_or("", String::as_str)
        );
        seen.entry(replica_of(labels)).or_default().insert(key, *v);
    }
    for (labels, v) in samples {
        let key = format!("samples_{}", labels.get("set").map_or("", String::as_str));
        seen.entry(replica_of(labels)).or_default().insert(key, *v);
    }
    let mut distinct = seen.values();
    let Some(first) = distinct.next() else { return Ok(None) };
    let same = |a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>| {
        a.len() == b.len()
            && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && (va == vb || (va.is_nan() && vb.is_nan())))
    };
    if let Some(other) = distinct.find(|c| !same(c, first)) {
        bail!("the replicas report different calibrations ({first:?} and {other:?}): they are not one configuration, and their counts cannot be merged");
    }
    let get = |k: &str| first.get(k).copied().unwrap_or(f64::NAN);
    let (fpr_high, non_members, members) = (get("fpr_high"), get("samples_non_members"), get("samples_members"));
    if !(fpr_high.is_finite() && non_members > 0.0) {
        return Ok(None); // uncalibrated
    }
    Ok(Some(FleetCalibration {
        fpr_high,
        fpr_estimate: get("fpr_estimate"),
        non_members: non_members as u64,
        tpr_estimate: get("tpr_estimate"),
        members: members.max(0.0) as u64,
    }))
}

/// A cohort's per-step bucket and flag increments, summed over replicas.
struct CohortSteps {
    bins: Vec<Vec<u64>>,
    flagged: Vec<u64>,
    replicas: BTreeSet<BTreeMap<String, String>>,
}

/// The evidence of series already read (what [`read`] computes after its queries).
pub fn compute(
    buckets: &[Series],
    flagged: &[Series],
    calibration: Option<FleetCalibration>,
    request: &Request,
) -> Result<FleetEvidence> {
    let query = "mint_membership_score_bucket";
    // The grid: the same `le` set on every replica and cohort.
    let mut grids: BTreeMap<ReplicaCohort, BTreeSet<String>> = BTreeMap::new();
    for s in buckets {
        let key = (replica_of(&s.labels), label(s, "cohort", query)?.to_string());
        grids.entry(key).or_default().insert(label(s, "le", query)?.to_string());
    }
    let mut bounds: Vec<f64> = Vec::new();
    let mut grid_of: Option<BTreeSet<String>> = None;
    for ((replica, cohort), les) in &grids {
        match &grid_of {
            None => {
                grid_of = Some(les.clone());
            }
            Some(g) if g != les => bail!(
                "{query}: replica {replica:?}, cohort {cohort} has buckets {les:?}, another {g:?}: the replicas do not share one score grid (one configuration)"
            ),
            Some(_) => {}
        }
    }
    let grid = grid_of.unwrap_or_default();
    for le in &grid {
        let v: f64 =
            if le == "+Inf" { f64::INFINITY } else { le.parse().with_context(|| format!("{query}: le {le:?}"))? };
        bounds.push(v);
    }
    bounds.sort_by(f64::total_cmp);
    ensure!(bounds.last() == Some(&f64::INFINITY), "{query}: no +Inf bucket");
    let index_of = |le: &str| -> usize {
        let v: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        bounds.iter().position(|b| b.total_cmp(&v).is_eq()).unwrap_or(0)
    };

    // The steps: every time any series has a point.
    let mut times: Vec<f64> = buckets.iter().chain(flagged).flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    times.sort_by(f64::total_cmp);
    times.dedup();

    // Cumulative bucket increments per (replica, cohort), then per-bucket counts summed.
    let mut cumulative: BTreeMap<ReplicaCohort, Vec<Vec<u64>>> = BTreeMap::new();
    for s in buckets {
        let key = (replica_of(&s.labels), label(s, "cohort", query)?.to_string());
        let slot = cumulative.entry(key).or_insert_with(|| vec![Vec::new(); bounds.len()]);
        slot[index_of(label(s, "le", query)?)] = increments(&s.points, &times);
    }
    let mut cohorts: BTreeMap<String, CohortSteps> = BTreeMap::new();
    for ((replica, cohort), per_le) in &cumulative {
        let c = cohorts.entry(cohort.clone()).or_insert_with(|| CohortSteps {
            bins: vec![vec![0; bounds.len()]; times.len()],
            flagged: vec![0; times.len()],
            replicas: BTreeSet::new(),
        });
        c.replicas.insert(replica.clone());
        for (t, step) in c.bins.iter_mut().enumerate() {
            let mut below = 0u64;
            for (b, inc) in per_le.iter().enumerate() {
                let at = inc.get(t).copied().unwrap_or(0);
                step[b] += at.saturating_sub(below);
                below = at;
            }
        }
    }
    for s in flagged {
        let cohort = label(s, "cohort", "mint_cohort_flagged_total")?;
        if let Some(c) = cohorts.get_mut(cohort) {
            for (t, inc) in increments(&s.points, &times).into_iter().enumerate() {
                c.flagged[t] += inc;
            }
        }
    }

    let replicas: BTreeSet<_> = cohorts.values().flat_map(|c| c.replicas.iter().cloned()).collect();
    let counts = calibration.map(|c| {
        (RateCounts::from_rate(c.fpr_estimate, c.non_members), RateCounts::from_rate(c.tpr_estimate, c.members))
    });
    let reference = cohorts.get(REFERENCE);
    let mut out = Vec::new();
    for (name, steps) in &cohorts {
        let (mut n, mut k, mut flags_max) = (0u64, 0u64, 1.0f64);
        let mut scores = ScoresEProcess::default();
        let mut reference_before = vec![0u64; bounds.len()];
        for t in 0..times.len() {
            n += steps.bins[t].iter().sum::<u64>();
            k += steps.flagged[t];
            if let Some(c) = calibration {
                flags_max = flags_max.max(anytime::flag_e_value(k, n, c.fpr_high));
            }
            if let Some(r) = reference.filter(|_| name != REFERENCE) {
                scores.round_counts(&steps.bins[t], &reference_before, &r.bins[t]);
                for (a, b) in reference_before.iter_mut().zip(&r.bins[t]) {
                    *a += b;
                }
            }
        }
        let total_bins: Vec<u64> = (0..bounds.len()).map(|b| steps.bins.iter().map(|s| s[b]).sum()).collect();
        let flags = calibration.map(|c| {
            let e = anytime::flag_e_value(k, n, c.fpr_high);
            EProcess { e_value: e, anytime_p_value: (1.0 / flags_max.max(e)).min(1.0) }
        });
        let scores_evidence = (name != REFERENCE && reference.is_some()).then(|| ScoresEvidence {
            process: EProcess { e_value: scores.e_value(), anytime_p_value: scores.anytime_p_value() },
            rounds: scores.rounds(),
        });
        let e_values: Vec<f64> =
            flags.iter().map(|f| f.e_value).chain(scores_evidence.iter().map(|s| s.process.e_value)).collect();
        let e_value = if e_values.is_empty() { 1.0 } else { e_values.iter().sum::<f64>() / e_values.len() as f64 };
        let sequence = counts.map(|(fpr, tpr)| anytime::member_fraction_sequence(k, n, fpr, tpr, CS_ALPHA));
        let finite = |x: f64| x.is_finite().then_some(x);
        let rank = reference.filter(|_| name != REFERENCE).map(|r| {
            let reference_bins: Vec<u64> = (0..bounds.len()).map(|b| r.bins.iter().map(|s| s[b]).sum()).collect();
            stats::rank_test_counts(&total_bins, &reference_bins)
        });
        out.push(CohortFleetEvidence {
            cohort: name.clone(),
            replicas: steps.replicas.len(),
            audited: n,
            flagged: k,
            bins: total_bins,
            flags,
            scores: scores_evidence,
            e_value,
            member_fraction: sequence.map(|s| [s.low, s.high]),
            certificate: sequence.and_then(|s| s.certificate),
            planned_look: PlannedLook {
                binomial_p_value: calibration.map(|c| stats::binomial_test(k, n, c.fpr_high).p_value),
                rank_z: rank.and_then(|(t, _)| finite(t.statistic)),
                rank_p_value: rank.and_then(|(t, _)| finite(t.p_value)),
                auc: rank.and_then(|(_, auc)| finite(auc)),
            },
            discovered: false,
        });
    }
    // e-BH over the suspect cohorts.
    let suspects: Vec<usize> =
        (0..out.len()).filter(|&i| !matches!(out[i].cohort.as_str(), REFERENCE | DEFAULT)).collect();
    let e: Vec<f64> = suspects.iter().map(|&i| out[i].e_value).collect();
    let mut discoveries = Vec::new();
    for j in anytime::e_bh(&e, request.fdr) {
        out[suspects[j]].discovered = true;
        discoveries.push(out[suspects[j]].cohort.clone());
    }
    bounds.pop(); // +Inf: the last bin is what lies above the last finite bound
    Ok(FleetEvidence {
        format: FLEET_FORMAT.into(),
        prometheus: String::new(),
        selector: request.selector.clone(),
        start: request.start,
        end: request.end,
        step: request.step,
        alpha: request.alpha,
        fdr: request.fdr,
        replicas: replicas.len(),
        calibration,
        buckets: bounds,
        cohorts: out,
        discoveries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Cumulative bucket series of one replica and cohort, from per-step counts per bucket.
    fn histogram(instance: &str, cohort: &str, les: &[&str], steps: &[Vec<u64>]) -> Vec<Series> {
        les.iter()
            .enumerate()
            .map(|(b, le)| {
                let mut total = 0.0;
                let points = steps
                    .iter()
                    .enumerate()
                    .map(|(t, counts)| {
                        total += counts[..=b].iter().sum::<u64>() as f64;
                        (t as f64, total)
                    })
                    .collect();
                Series { labels: labels(&[("instance", instance), ("cohort", cohort), ("le", le)]), points }
            })
            .collect()
    }

    fn request() -> Request {
        Request { selector: "job=\"mint\"".into(), start: 0.0, end: 10.0, step: 1.0, alpha: 0.01, fdr: 0.05 }
    }

    const LES: [&str; 3] = ["0.5", "0.9", "+Inf"];

    #[test]
    fn replicas_sum_to_one_process_and_a_reset_is_a_new_count() {
        // Two replicas, each with a suspect and a reference cohort; replica b restarts at step 2.
        let a = [vec![1, 2, 3], vec![0, 1, 1], vec![2, 0, 0]];
        let mut series = histogram("a", "suspect", &LES, &a);
        series.extend(histogram("a", "reference", &LES, &[vec![3, 1, 0], vec![2, 1, 0], vec![1, 0, 0]]));
        let mut b = histogram("b", "suspect", &LES, &[vec![0, 1, 1], vec![1, 0, 0], vec![0, 0, 2]]);
        // The restart: step 2's cumulative counts start again from zero (it served 0, 0, 2).
        for s in &mut b {
            let le = s.labels["le"].clone();
            s.points[2].1 = if le == "+Inf" { 2.0 } else { 0.0 };
        }
        series.extend(b);
        let evidence = compute(&series, &[], None, &request()).unwrap();
        let suspect = evidence.cohorts.iter().find(|c| c.cohort == "suspect").unwrap();
        // Replica a's three steps, then b's (its third counted from the restart).
        let sum = |rows: [[u64; 3]; 6]| (0..3).map(|b| rows.iter().map(|r| r[b]).sum()).collect::<Vec<u64>>();
        assert_eq!(suspect.bins, sum([[1, 2, 3], [0, 1, 1], [2, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 2]]));
        assert_eq!((suspect.replicas, evidence.replicas), (2, 2));
        assert_eq!(evidence.buckets, vec![0.5, 0.9]);
        // The first step only teaches the ranking: two rounds bet.
        assert!(suspect.flags.is_none() && suspect.scores.is_some_and(|s| s.rounds == 2));
    }

    #[test]
    fn replicas_on_other_grids_are_refused() {
        let mut series = histogram("a", "suspect", &LES, &[vec![1, 1, 1]]);
        series.extend(histogram("b", "suspect", &["0.5", "+Inf"], &[vec![1, 1]]));
        let err = compute(&series, &[], None, &request()).unwrap_err().to_string();
        assert!(err.contains("do not share one score grid"), "{err}");
    }

    #[test]
    fn replicas_with_other_calibrations_are_refused() {
        let r = |instance: &str, v: f64| (labels(&[("instance", instance), ("rate", "fpr"), ("bound", "high")]), v);
        let s = |instance: &str| (labels(&[("instance", instance), ("set", "non_members")]), 1000.0);
        assert!(calibration_of(&[r("a", 0.02), r("b", 0.02)], &[s("a"), s("b")]).unwrap().is_some());
        let err = calibration_of(&[r("a", 0.02), r("b", 0.03)], &[s("a"), s("b")]).unwrap_err().to_string();
        assert!(err.contains("different calibrations"), "{err}");
    }
}
