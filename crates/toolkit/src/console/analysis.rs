//! What the console says about a set of uploaded images, as one JSON value (the evidence):
//! the same function for the page and for `mint verify-bundle`, so that a bundle re-verifies
//! byte for byte. It holds no time, no address and no image, only what the images and the
//! model determine.
//!
//! - Per image: the head's score and whether it reaches the calibrated threshold, and whether
//!   the image looks like the model's domain ([`crate::blind::DomainCheck`]).
//! - For the set: the rank test of its scores against the reference non-members' (as
//!   `mint dataset-test`), the binomial test of its flags against the calibrated FPR, the member
//!   fraction, how many images the rank test would need at the effect seen, and the
//!   distribution-shift control (blind classifier on raw pixels, and the per-image check).
//! - A verdict in plain words, and the caveats that always apply.
//! - All of it as the console's disclosure level allows ([`super::disclosure`]).

use anyhow::Result;
use mint_audit::evidence::stats::{self, Interval, ScoreBins};
use serde_json::{json, Value};
use statrs::distribution::{ContinuousCDF, Normal};

use super::disclosure::{self, disclose, Disclosure};
use super::registry::ConsoleModel;
use super::uploads::Decoded;
use crate::blind;
use crate::data::Images;
use crate::power::{finite, power_table};
use crate::roc;
use crate::score::score_sets_with;

/// The evidence's format; a new one when any field changes meaning.
pub const EVIDENCE_FORMAT: &str = "mint-console-evidence/1";
/// Significance level of the set-level decision.
pub const ALPHA: f64 = 0.01;
/// Power at which "images needed" is computed.
const POWER: f64 = 0.8;
/// Uploads from which the blind classifier runs (five folds need five of each class).
const BLIND_MIN_IMAGES: usize = 10;
/// The blind classifier finds a shift when it separates the uploads from the reference this
/// well, and significantly so.
const SHIFT_AUC: f64 = 0.6;
const SHIFT_P: f64 = 0.001;
/// A member-fraction interval at least this wide says nothing worth a sentence.
const UNINFORMATIVE_SPAN: f64 = 0.9;

/// Scores the decoded uploads and builds their evidence, as `level` discloses it.
pub fn analyze(model: &ConsoleModel, decoded: &Decoded, level: Disclosure) -> Result<Value> {
    let none = Images { data: Vec::new(), shape: model.input_shape, labels: None };
    let scored = score_sets_with(&model.model, 1, 64, &model.config, &decoded.images, &none)?;
    Ok(disclose(evidence(model, decoded, &scored.pos, &scored.head_sha256, level), level))
}

fn evidence(model: &ConsoleModel, decoded: &Decoded, scores: &[f64], head_sha256: &str, level: Disclosure) -> Value {
    let config = &model.config;
    let calibration = config.calibration().expect("a console model is calibrated (checked at load)");
    let threshold = config.threshold();
    let reference = &model.reference;
    let n = scores.len();

    let in_domain: Vec<bool> = (0..n).map(|i| model.domain.in_domain(decoded.images.sample(i))).collect();
    let flagged_each: Vec<bool> = scores.iter().map(|&s| s as f32 >= threshold).collect();
    let images: Vec<Value> = decoded
        .samples
        .iter()
        .zip(scores)
        .zip(flagged_each.iter().zip(&in_domain))
        .map(|((s, &score), (&flagged, &in_domain))| {
            json!({"file": s.file, "sha256": s.sha256, "index": s.index, "note": s.note,
                   "score": score as f32, "flagged": flagged, "in_domain": in_domain})
        })
        .collect();

    // The set-level tests.
    let (rank, _) = stats::rank_test(
        &ScoreBins::from_scores(scores.iter().map(|&x| x as f32)),
        &ScoreBins::from_scores(reference.scores.iter().map(|&x| x as f32)),
    );
    let auc = roc::auc(scores, &reference.scores);
    let flagged = flagged_each.iter().filter(|&&f| f).count() as u64;
    let fpr = Interval { estimate: calibration.fpr.estimate, low: calibration.fpr.low, high: calibration.fpr.high };
    let tpr = Interval { estimate: calibration.tpr.estimate, low: calibration.tpr.low, high: calibration.tpr.high };
    let binomial = stats::binomial_test(flagged, n as u64, fpr.high);
    let fraction = stats::member_fraction(flagged, n as u64, fpr, tpr);
    let evidence_found = rank.p_value < ALPHA;
    let power = power_table(auc, reference.scores.len(), ALPHA, Some(fpr.high), flagged as f64 / n as f64);
    let needed = power["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["power"].as_f64() == Some(POWER)))
        .and_then(|r| r["rank_with_this_reference"].as_f64())
        .map(|m| m as u64);

    // The distribution-shift control.
    let out_of_domain = in_domain.iter().filter(|&&d| !d).count();
    let blind = (n >= BLIND_MIN_IMAGES).then(|| {
        let (u, r) = blind::scores(&decoded.images, &reference.images, 0);
        let auc = roc::auc(&u, &r);
        let (m, k) = (u.len() as f64, r.len() as f64);
        let z = (auc - 0.5) / ((m + k + 1.0) / (12.0 * m * k)).sqrt();
        (auc, 1.0 - Normal::standard().cdf(z))
    });
    let blind_shift = blind.is_some_and(|(auc, p)| auc >= SHIFT_AUC && p < SHIFT_P);
    let domain_shift = out_of_domain > 0 && out_of_domain * 10 > n;
    let shift = blind_shift || domain_shift;

    let verdict = verdict(VerdictInput {
        n,
        flagged,
        p: rank.p_value,
        evidence: evidence_found,
        shift,
        out_of_domain,
        blind,
        needed,
        fraction,
        reference: reference.scores.len(),
        level,
    });
    let interval = |i: Interval| json!({"estimate": finite(i.estimate), "low": finite(i.low), "high": finite(i.high)});
    json!({
        "format": EVIDENCE_FORMAT,
        "mint_version": mint_audit::VERSION,
        "model": {"id": config.model.id, "version": config.model.version, "title": model.card["title"]},
        "head": {"kind": config.head.kind(), "sha256": head_sha256, "threshold": threshold},
        "calibration": {"target_fpr": calibration.target_fpr, "fpr": interval(fpr), "tpr": interval(tpr),
                        "digest": calibration.digest},
        "reference": {"samples": reference.scores.len(), "sha256": reference.sha256, "description": reference.description},
        "alpha": ALPHA,
        "images": images,
        "set": {
            "images": n,
            "flagged": flagged,
            "rank_test": {"p_value": rank.p_value, "z": finite(rank.statistic), "auc": auc},
            "binomial_test": {"p_value": binomial.p_value, "null_fpr": fpr.high},
            "member_fraction": interval(fraction),
            "images_needed": needed,
            "evidence": evidence_found,
            "distribution_shift": {
                "detected": shift,
                "out_of_domain": out_of_domain,
                "blind_auc": blind.map(|b| b.0),
                "blind_p_value": blind.map(|b| b.1),
            },
        },
        "verdict": verdict,
        "caveats": caveats(model, calibration.fpr.estimate, calibration.tpr.estimate),
    })
}

struct VerdictInput {
    n: usize,
    flagged: u64,
    p: f64,
    evidence: bool,
    shift: bool,
    out_of_domain: usize,
    blind: Option<(f64, f64)>,
    needed: Option<u64>,
    fraction: Interval,
    reference: usize,
    level: Disclosure,
}

/// The outcome in plain words: a headline, then why.
fn verdict(v: VerdictInput) -> Value {
    let images = |n: usize| if n == 1 { "1 image".to_string() } else { format!("{n} images") };
    let (outcome, headline, mut why) = if v.shift {
        let mut why = String::from("A verdict on them would mean nothing: ");
        if v.out_of_domain > 0 {
            why.push_str(&format!(
                "{} of your {} look unlike anything in the model's own data (their brightness and layout lie outside the range of {} reference images). ",
                v.out_of_domain,
                images(v.n),
                v.reference
            ));
        }
        if let Some((auc, _)) = v.blind.filter(|_| v.out_of_domain * 10 <= v.n) {
            why.push_str(&format!(
                "A simple classifier that sees only raw pixels tells your images apart from the model's data (AUC {auc:.2}), \
                 so any difference in scores may come from that, not from training. "
            ));
        }
        why.push_str("Upload images of the kind this model was built for.");
        ("shift", "These images do not look like the data this model works on, so the test cannot say whether they were used.".to_string(), why)
    } else if v.evidence {
        let mut why = format!(
            "Scored by the model's audit, your {} rank higher than {} images known not to have been used in training. \
             A difference this large would arise by chance with probability {} (below the {} this console requires).",
            images(v.n),
            v.reference,
            p_words(v.p, v.level),
            ALPHA
        );
        if v.level != Disclosure::Sets
            && v.fraction.estimate.is_finite()
            && v.fraction.high - v.fraction.low < UNINFORMATIVE_SPAN
        {
            // Below `scores`, the interval widened to tens of percent, as the numbers are.
            let (low, high) = match v.level {
                Disclosure::Scores => (v.fraction.low, v.fraction.high),
                _ => ((v.fraction.low * 10.0).floor() / 10.0, ((v.fraction.high * 10.0).ceil() / 10.0).min(1.0)),
            };
            why.push_str(&format!(
                " Between {:.0}% and {:.0}% of them were probably in the training data (95% interval).",
                100.0 * low,
                100.0 * high
            ));
        } else {
            why.push_str(" How many of them were used cannot be pinned down from these images alone.");
        }
        ("evidence", "Strong evidence that this model was trained on these images, taken as a set.".to_string(), why)
    } else {
        // The images needed follow from the set's effect size, which below `scores` is not told.
        let more = match v.needed {
            _ if v.level != Disclosure::Scores => " More images of the same kind may still decide it.".to_string(),
            Some(m) if m as usize > v.n => format!(
                " If the difference seen held, about {m} images would be needed to decide ({} more).",
                m as usize - v.n
            ),
            Some(_) => " More images of the same kind could still decide it.".to_string(),
            None => {
                " Your images score no higher than the unused ones, so more images like them would not change this."
                    .to_string()
            }
        };
        let why = format!(
            "Your {} do not score significantly higher than {} images known not to have been used (chance probability {}). \
             This does not show they were not used: the test finds only what the model remembers.{more}",
            images(v.n),
            v.reference,
            p_words(v.p, v.level)
        );
        ("no_evidence", "No evidence that this model was trained on these images.".to_string(), why)
    };
    if v.flagged > 0 && !v.shift && v.level != Disclosure::Sets {
        why.push_str(&format!(" {} of {} scored above the calibrated threshold one by one.", v.flagged, images(v.n)));
    }
    json!({"outcome": outcome, "headline": headline, "explanation": why})
}

fn p_words(p: f64, level: Disclosure) -> String {
    if level != Disclosure::Scores {
        format!("p {}", disclosure::p_band(p, ALPHA))
    } else if p < 1e-4 {
        format!("p = {p:.1e}")
    } else {
        format!("p = {p:.4}")
    }
}

fn caveats(model: &ConsoleModel, fpr: f64, tpr: f64) -> Vec<String> {
    vec![
        format!(
            "One image says little: at the calibrated threshold this head flags about {:.0}% of the images the model was trained on, \
             and about {:.1}% of images it never saw are flagged too.",
            100.0 * tpr,
            100.0 * fpr
        ),
        "Sets say more: the set-level test compares your images, together, with images known not to be in the training data. \
         It assumes your images are of the same kind as those; the distribution-shift control checks that."
            .into(),
        format!(
            "\"No evidence\" is not proof of absence: the audit detects what the model remembers of its training images, \
             which depends on the model ({}).",
            model.card["title"].as_str().unwrap_or("this model")
        ),
        "These are statistical results about one model's behaviour, not a record of its training data.".into(),
    ]
}
