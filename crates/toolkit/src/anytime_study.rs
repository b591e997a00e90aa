//! The validation of the anytime-valid evidence (`mint evidence-study --anytime`), by
//! simulation from a calibrated model's own scored pools: eval members, eval non-members, and
//! the check part of the non-members that calibration never saw. Samples are drawn with
//! replacement, so each simulated stream is i.i.d. from the pool, as the tests assume.
//!
//! - **Type I under continuous monitoring**: non-member streams looked at after every sample
//!   (flags) and every round (scores); the share that *ever* reaches `1/alpha`, for the flag
//!   e-process on check-part non-members and at the null's boundary (flags drawn at exactly
//!   the calibrated FPR's upper bound, the worst case the null allows), for the scores
//!   e-process with rounds of one replica (16 + 16 samples) and of a fleet of four (a scrape
//!   interval's 64 + 64), and for their average (the decision's e-value).
//! - **Power**: samples to detection (median and 90th percentile) for cohorts of 100%, 50%,
//!   20% and 5% members, anytime (the average e-value reaching `1/alpha`, read every round)
//!   against the fixed windows of the library's default configuration (500 samples, binomial
//!   or rank at alpha).
//! - **Coverage under optional stopping**: the share of streams whose member-share confidence
//!   sequence ever excludes the true share, read after every sample.
//! - **Certificates**: the share of members certified absent from non-member cohorts of 100,
//!   500 and 5,000 samples.
//! - **FDR**: many cohorts at once, a few holding members; e-BH on their e-values, the realised
//!   false discovery proportion and power over repetitions.

use mint_audit::evidence::anytime::{self, RateCounts, ScoresEProcess, CS_ALPHA, ROUND};
use mint_audit::evidence::stats::{self, ScoreBins};
use serde_json::{json, Value};

use crate::roc::SplitMix;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Non-member streams of the type I experiment.
    pub streams: usize,
    /// Cohort samples per type I stream (as many reference samples beside them).
    pub length: usize,
    /// Streams per power and coverage cell.
    pub draws: usize,
    /// Longest power stream, in cohort samples.
    pub max_length: usize,
    /// The fixed windows compared with (the library's default `evidence.window`).
    pub window: usize,
    /// Cohorts of the FDR experiment, repetitions of it, and its level.
    pub fdr_cohorts: usize,
    pub fdr_repeats: usize,
    pub fdr_q: f64,
    pub alpha: f64,
    pub seed: u64,
}

/// A calibrated model's scored pools.
pub struct Pools<'a> {
    pub members: &'a [f64],
    pub non_members: &'a [f64],
    /// Positions in `non_members` of the check part.
    pub check: &'a [usize],
    pub threshold: f32,
    /// The flag e-process's null.
    pub fpr_high: f64,
    pub fpr: RateCounts,
    pub tpr: RateCounts,
}

/// Member shares of the power and coverage cells.
const SHARES: [f64; 4] = [1.0, 0.5, 0.2, 0.05];
/// Non-member cohort sizes the certificate is read at.
const CERTIFIED: [usize; 3] = [100, 500, 5000];
/// Share of members in the FDR experiment's cohorts that hold any, and the share of such
/// cohorts.
const FDR_MEMBER_SHARE: f64 = 0.5;
const FDR_HOLDING: f64 = 0.05;
/// Samples per cohort in the FDR experiment.
const FDR_SAMPLES: usize = 500;

fn uniform(rng: &mut SplitMix) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// One sample of a cohort with member share `share`: `(score, is a member)`.
fn cohort_sample(p: &Pools, share: f64, rng: &mut SplitMix) -> f64 {
    if share > 0.0 && uniform(rng) < share {
        p.members[rng.below(p.members.len())]
    } else {
        p.non_members[p.check[rng.below(p.check.len())]]
    }
}

fn reference_sample(p: &Pools, rng: &mut SplitMix) -> f64 {
    p.non_members[rng.below(p.non_members.len())]
}

fn rate(k: usize, n: usize) -> Value {
    let w = stats::wilson(k as u64, n as u64);
    json!({"count": k, "of": n, "rate": k as f64 / n.max(1) as f64, "low": w.low, "high": w.high})
}

/// A stream's scores e-process fed in rounds of `round` cohort and `round` reference samples.
struct Rounds {
    process: ScoresEProcess,
    cohort: ScoreBins,
    reference: ScoreBins,
    history: ScoreBins,
    round: usize,
}

impl Rounds {
    fn new(round: usize) -> Rounds {
        Rounds {
            process: ScoresEProcess::default(),
            cohort: ScoreBins::default(),
            reference: ScoreBins::default(),
            history: ScoreBins::default(),
            round,
        }
    }

    /// Adds one cohort and one reference sample; closes the round when full. Returns whether
    /// a round closed.
    fn add(&mut self, cohort: f64, reference: f64) -> bool {
        self.cohort.add(cohort as f32);
        self.reference.add(reference as f32);
        if (self.cohort.total() as usize) < self.round {
            return false;
        }
        self.process.round(&self.cohort, &self.history, &self.reference);
        self.history.merge(&self.reference);
        self.cohort.clear();
        self.reference.clear();
        true
    }
}

/// Type I error under continuous monitoring.
fn type_one(p: &Pools, s: &Settings, rng: &mut SplitMix) -> Value {
    let level = 1.0 / s.alpha;
    let (mut flags, mut boundary, mut scores1, mut scores4, mut combined) = (0, 0, 0, 0, 0);
    for _ in 0..s.streams {
        let (mut n, mut k, mut kb) = (0u64, 0u64, 0u64);
        let (mut hit_f, mut hit_b, mut hit_1, mut hit_4, mut hit_c) = (false, false, false, false, false);
        let (mut one, mut four) = (Rounds::new(ROUND as usize), Rounds::new(4 * ROUND as usize));
        for _ in 0..s.length {
            let c = cohort_sample(p, 0.0, rng);
            let r = reference_sample(p, rng);
            n += 1;
            k += (c as f32 >= p.threshold) as u64;
            kb += (uniform(rng) < p.fpr_high) as u64;
            let e_flags = anytime::flag_e_value(k, n, p.fpr_high);
            hit_f |= e_flags >= level;
            hit_b |= anytime::flag_e_value(kb, n, p.fpr_high) >= level;
            if one.add(c, r) {
                hit_1 |= one.process.e_value() >= level;
            }
            if four.add(c, r) {
                hit_4 |= four.process.e_value() >= level;
            }
            hit_c |= (e_flags + one.process.e_value()) / 2.0 >= level;
        }
        flags += hit_f as usize;
        boundary += hit_b as usize;
        scores1 += hit_1 as usize;
        scores4 += hit_4 as usize;
        combined += hit_c as usize;
    }
    json!({
        "streams": s.streams, "length": s.length,
        "flags_check_part": rate(flags, s.streams),
        "flags_at_the_boundary": rate(boundary, s.streams),
        "scores_one_replica": rate(scores1, s.streams),
        "scores_fleet_of_four": rate(scores4, s.streams),
        "average": rate(combined, s.streams),
    })
}

/// Samples to the first detection of a cohort with member share `share`, anytime and by the
/// fixed windows; `None` when not within `max_length`.
fn detection(p: &Pools, s: &Settings, share: f64, rng: &mut SplitMix) -> (Option<usize>, Option<usize>) {
    let level = 1.0 / s.alpha;
    let (mut n, mut k) = (0u64, 0u64);
    let mut rounds = Rounds::new(ROUND as usize);
    let (mut window, mut window_k, mut reference_all) = (ScoreBins::default(), 0u64, ScoreBins::default());
    let (mut anytime_at, mut window_at) = (None, None);
    for i in 1..=s.max_length {
        let c = cohort_sample(p, share, rng);
        let r = reference_sample(p, rng);
        n += 1;
        let flagged = (c as f32 >= p.threshold) as u64;
        k += flagged;
        if rounds.add(c, r) && anytime_at.is_none() {
            let e = (anytime::flag_e_value(k, n, p.fpr_high) + rounds.process.e_value()) / 2.0;
            if e >= level {
                anytime_at = Some(i);
            }
        }
        reference_all.add(r as f32);
        window.add(c as f32);
        window_k += flagged;
        if window.total() as usize == s.window {
            if window_at.is_none() {
                let b = stats::binomial_test(window_k, window.total(), p.fpr_high).p_value;
                let rank = stats::rank_test(&window, &reference_all).0.p_value;
                if b < s.alpha || rank < s.alpha {
                    window_at = Some(i);
                }
            }
            window.clear();
            window_k = 0;
        }
        if anytime_at.is_some() && window_at.is_some() {
            break;
        }
    }
    (anytime_at, window_at)
}

/// Median and 90th percentile of detection times, `None` counted as never.
fn quantiles(mut at: Vec<Option<usize>>) -> Value {
    at.sort_by_key(|a| a.unwrap_or(usize::MAX));
    let q = |f: f64| at.get(((at.len() as f64 * f).ceil() as usize).saturating_sub(1)).copied().flatten();
    let never = at.iter().filter(|a| a.is_none()).count();
    json!({"median": q(0.5), "p90": q(0.9), "never": never, "of": at.len()})
}

fn power(p: &Pools, s: &Settings, rng: &mut SplitMix) -> Value {
    let rows: Vec<Value> = SHARES
        .iter()
        .map(|&share| {
            let (anytime, windows): (Vec<_>, Vec<_>) = (0..s.draws).map(|_| detection(p, s, share, rng)).unzip();
            json!({"share": share, "anytime": quantiles(anytime), "windows": quantiles(windows)})
        })
        .collect();
    json!({"draws": s.draws, "max_length": s.max_length, "window": s.window, "rows": rows})
}

/// Whether the member-share sequence of a stream with member share `share`, read after every
/// sample, ever excludes it.
fn ever_excludes(p: &Pools, s: &Settings, share: f64, rng: &mut SplitMix) -> bool {
    let part = CS_ALPHA / 3.0;
    // The calibrated rates' intervals are fixed for the stream: computed once.
    let rates = (anytime::fpr_interval(p.fpr, part), anytime::clopper_pearson(p.tpr, part));
    let (mut n, mut k) = (0u64, 0u64);
    for _ in 0..s.length {
        let c = cohort_sample(p, share, rng);
        n += 1;
        k += (c as f32 >= p.threshold) as u64;
        let seq = anytime::member_fraction_within(k, n, rates.0, rates.1, part);
        if !(seq.low <= share && share <= seq.high) {
            return true;
        }
    }
    false
}

fn coverage(p: &Pools, s: &Settings, rng: &mut SplitMix) -> Value {
    let flagged = |xs: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = xs.collect();
        v.iter().filter(|&&x| x as f32 >= p.threshold).count() as f64 / v.len().max(1) as f64
    };
    let true_fpr = flagged(&mut p.check.iter().map(|&i| p.non_members[i]));
    let true_tpr = flagged(&mut p.members.iter().copied());
    let rows: Vec<Value> = [0.0, 0.2, 0.5]
        .iter()
        .map(|&share| {
            let left = (0..s.draws).filter(|_| ever_excludes(p, s, share, rng)).count();
            json!({"share": share, "left": rate(left, s.draws)})
        })
        .collect();
    json!({"draws": s.draws, "length": s.length, "pool_fpr": true_fpr, "pool_tpr": true_tpr, "rows": rows})
}

fn certificates(p: &Pools, s: &Settings, rng: &mut SplitMix) -> Value {
    let rows: Vec<Value> = CERTIFIED
        .iter()
        .map(|&size| {
            let mut eps: Vec<Option<f64>> = (0..s.draws)
                .map(|_| {
                    let k = (0..size).filter(|_| cohort_sample(p, 0.0, rng) as f32 >= p.threshold).count();
                    anytime::member_fraction_sequence(k as u64, size as u64, p.fpr, p.tpr, CS_ALPHA).certificate
                })
                .collect();
            eps.sort_by(|a, b| a.unwrap_or(2.0).total_cmp(&b.unwrap_or(2.0)));
            let certified = eps.iter().filter(|e| e.is_some()).count();
            json!({"samples": size, "median_epsilon": eps[eps.len() / 2], "certified": rate(certified, s.draws)})
        })
        .collect();
    json!({"draws": s.draws, "rows": rows})
}

fn fdr(p: &Pools, s: &Settings, rng: &mut SplitMix) -> Value {
    let holding = ((s.fdr_cohorts as f64) * FDR_HOLDING).round() as usize;
    let (mut fdp, mut found) = (Vec::new(), Vec::new());
    for _ in 0..s.fdr_repeats {
        let e: Vec<f64> = (0..s.fdr_cohorts)
            .map(|c| {
                let share = if c < holding { FDR_MEMBER_SHARE } else { 0.0 };
                let mut rounds = Rounds::new(ROUND as usize);
                let mut k = 0u64;
                for _ in 0..FDR_SAMPLES {
                    let x = cohort_sample(p, share, rng);
                    k += (x as f32 >= p.threshold) as u64;
                    rounds.add(x, reference_sample(p, rng));
                }
                (anytime::flag_e_value(k, FDR_SAMPLES as u64, p.fpr_high) + rounds.process.e_value()) / 2.0
            })
            .collect();
        let rejected = anytime::e_bh(&e, s.fdr_q);
        let false_ones = rejected.iter().filter(|&&i| i >= holding).count();
        fdp.push(false_ones as f64 / rejected.len().max(1) as f64);
        found.push((rejected.len() - false_ones) as f64 / holding.max(1) as f64);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    json!({"cohorts": s.fdr_cohorts, "holding": holding, "member_share": FDR_MEMBER_SHARE, "samples": FDR_SAMPLES,
           "repeats": s.fdr_repeats, "q": s.fdr_q,
           "realised_fdr": mean(&fdp), "largest_fdp": fdp.iter().copied().fold(0.0, f64::max), "power": mean(&found)})
}

/// Every experiment on one model's pools.
pub fn study(p: &Pools, s: &Settings) -> Value {
    let mut rng = SplitMix::new(s.seed ^ 0x616e_7974);
    json!({
        "type_one": type_one(p, s, &mut rng),
        "power": power(p, s, &mut rng),
        "coverage": coverage(p, s, &mut rng),
        "certificates": certificates(p, s, &mut rng),
        "fdr": fdr(p, s, &mut rng),
    })
}

fn f(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("n/a".into(), |x| format!("{x:.digits$}"))
}

fn r(v: &Value) -> String {
    format!("{} of {} = {} [{}, {}]", v["count"], v["of"], f(&v["rate"], 4), f(&v["low"], 4), f(&v["high"], 4))
}

/// The tables of one model's study, in Markdown.
pub fn render(a: &Value, alpha: f64) -> String {
    let t = &a["type_one"];
    let mut out = format!(
        "**Type I error under continuous monitoring** ({} non-member streams of {} samples, each beside as many reference samples; \
         a look after every sample; the share that ever reached 1/alpha = {}, with its Wilson 95% interval; at most alpha = {alpha} is the claim)\n\n\
         | e-process | ever reached 1/alpha |\n|---|---|\n\
         | flags, check-part non-members | {} |\n| flags, at the null's boundary (flag rate = the FPR's upper bound) | {} |\n\
         | scores, one replica (rounds of 16 + 16) | {} |\n| scores, a fleet of four (rounds of 64 + 64) | {} |\n\
         | average of flags and scores (the decision) | {} |\n\n",
        t["streams"], t["length"], 1.0 / alpha,
        r(&t["flags_check_part"]), r(&t["flags_at_the_boundary"]), r(&t["scores_one_replica"]),
        r(&t["scores_fleet_of_four"]), r(&t["average"]),
    );
    let p = &a["power"];
    out.push_str(&format!(
        "**Samples to detection** ({} streams a row, up to {} samples; anytime: the average e-value read every round; \
         windows: the first window of {} with binomial or rank p < alpha)\n\n\
         | member share | anytime: median | 90th pct | never | windows: median | 90th pct | never |\n|---|---|---|---|---|---|---|\n",
        p["draws"], p["max_length"], p["window"]
    ));
    let at = |v: &Value| v.as_u64().map_or("never".to_string(), |x| x.to_string());
    for row in p["rows"].as_array().into_iter().flatten() {
        let (a, w) = (&row["anytime"], &row["windows"]);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            f(&row["share"], 2),
            at(&a["median"]),
            at(&a["p90"]),
            a["never"],
            at(&w["median"]),
            at(&w["p90"]),
            w["never"]
        ));
    }
    let c = &a["coverage"];
    out.push_str(&format!(
        "\n**Coverage of the member-share sequence under optional stopping** ({} streams of {} samples a row, read after every sample; \
         at most 5% may ever leave)\n\n| true share | streams that ever left the sequence |\n|---|---|\n",
        c["draws"], c["length"]
    ));
    for row in c["rows"].as_array().into_iter().flatten() {
        out.push_str(&format!("| {} | {} |\n", f(&row["share"], 2), r(&row["left"])));
    }
    out.push_str(&format!(
        "\n**Non-membership certificates on non-member cohorts** ({} cohorts a row)\n\n| samples | median certified bound | cohorts certified |\n|---|---|---|\n",
        a["certificates"]["draws"]
    ));
    for row in a["certificates"]["rows"].as_array().into_iter().flatten() {
        let eps =
            row["median_epsilon"].as_f64().map_or("cannot certify".to_string(), |e| format!("< {:.1}%", 100.0 * e));
        out.push_str(&format!("| {} | {} | {} |\n", row["samples"], eps, r(&row["certified"])));
    }
    let d = &a["fdr"];
    out.push_str(&format!(
        "\n**Many cohorts** ({} cohorts of {} samples, {} of them {}% members; e-BH at q = {} on each cohort's average e-value; {} repetitions): \
         realised FDR {} (largest false discovery proportion {}), power {}.\n",
        d["cohorts"], d["samples"], d["holding"], f(&(d["member_share"].as_f64().unwrap_or(0.0) * 100.0).into(), 0),
        d["q"], d["repeats"], f(&d["realised_fdr"], 4), f(&d["largest_fdp"], 4), f(&d["power"], 3)
    ));
    out
}
