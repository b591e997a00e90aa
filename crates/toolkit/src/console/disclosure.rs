//! How much the console tells whoever asks: the choice between a useful answer for a data owner
//! and a membership oracle for strangers (docs/security.md measures what each level leaks).
//!
//! A console faces the public, and its per-image scores separate members from non-members far
//! better than its calibrated flags do (docs/security.md measures both through the API): so by
//! default it gives neither a score nor an exact p-value, only statements coarse enough to say
//! what a data owner needs and little more.
//!
//! | level | per image | set-level numbers |
//! |---|---|---|
//! | `scores` | score and calibrated flag | exact (as `mint dataset-test`) |
//! | `flags` (default) | calibrated flag only | the rank test's decision; the flag count, its binomial test's decision, the member share to 10% |
//! | `sets` | nothing | the rank test's decision |
//!
//! Coarsening is a function of the exact evidence alone, so a bundle still recomputes byte for
//! byte: `mint verify-bundle` reads the level from the evidence.

use std::str::FromStr;

use serde_json::{json, Value};

/// How much the console discloses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    /// Every number: for a console on loopback, or an audience the operator trusts.
    Scores,
    /// Calibrated flags per image, coarse set-level numbers (the default).
    Flags,
    /// Set-level statements only.
    Sets,
}

impl Disclosure {
    pub fn name(self) -> &'static str {
        match self {
            Disclosure::Scores => "scores",
            Disclosure::Flags => "flags",
            Disclosure::Sets => "sets",
        }
    }
}

impl FromStr for Disclosure {
    type Err = String;
    fn from_str(s: &str) -> Result<Disclosure, String> {
        match s {
            "scores" => Ok(Disclosure::Scores),
            "flags" => Ok(Disclosure::Flags),
            "sets" => Ok(Disclosure::Sets),
            other => Err(format!("'{other}': the disclosure is one of scores, flags, sets")),
        }
    }
}

/// A p-value below `scores`: only on which side of the decision level `alpha` it falls.
pub fn p_band(p: f64, alpha: f64) -> String {
    if !p.is_finite() {
        "unknown".into()
    } else if p < alpha {
        format!("< {alpha}")
    } else {
        format!("≥ {alpha}")
    }
}

/// Rounds `x` down (or up) to a multiple of `step`, for an interval that only widens.
fn floor_to(x: f64, step: f64) -> f64 {
    ((x / step).floor() * step * 1e6).round() / 1e6
}
fn ceil_to(x: f64, step: f64) -> f64 {
    ((x / step).ceil() * step * 1e6).round() / 1e6
}

/// The evidence as `level` discloses it. `evidence` is the full analysis
/// ([`super::analysis`]); under `scores` it is returned as it is.
///
/// Below `scores` nothing is kept that moves with one image's score inside a set: an attacker
/// who pads a target with known non-members reads the set's numbers as the target's. Bands
/// were not enough: with p-values in four bands and the AUC to 0.1, a target padded with the
/// same nine non-members was told apart nearly as well as by its score (docs/security.md).
/// What is kept: the decision of the rank test, and at `flags` the flags and what follows
/// from their count.
pub fn disclose(mut evidence: Value, level: Disclosure) -> Value {
    evidence["disclosure"] = json!(level.name());
    if level == Disclosure::Scores {
        return evidence;
    }
    if let Some(images) = evidence["images"].as_array_mut() {
        for image in images {
            let image = image.as_object_mut().expect("an image is an object");
            image.remove("score");
            if level == Disclosure::Sets {
                image.remove("flagged");
            }
        }
    }
    // The evidence's own decision level.
    let alpha = evidence["alpha"].as_f64().unwrap_or(f64::NAN);
    let set = &mut evidence["set"];
    let band = |v: &Value| v.as_f64().map_or(json!(null), |p| json!(p_band(p, alpha)));
    set["rank_test"] = json!({"p_value": band(&set["rank_test"]["p_value"]), "auc": null});
    set["images_needed"] = json!(null);
    match level {
        Disclosure::Flags => {
            // Functions of the flag count, which the flags themselves disclose.
            set["binomial_test"]["p_value"] = band(&set["binomial_test"]["p_value"]);
            let fraction = &mut set["member_fraction"];
            *fraction = match (fraction["low"].as_f64(), fraction["high"].as_f64()) {
                (Some(low), Some(high)) => {
                    json!({"estimate": null, "low": floor_to(low, 0.1), "high": ceil_to(high, 0.1).min(1.0)})
                }
                _ => json!({"estimate": null, "low": null, "high": null}),
            };
        }
        _ => {
            set["flagged"] = json!(null);
            set["binomial_test"]["p_value"] = json!(null);
            set["member_fraction"] = json!({"estimate": null, "low": null, "high": null});
        }
    }
    evidence
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Value {
        json!({"alpha": 0.01, "images": [{"file": "a", "score": 0.93, "flagged": true}],
               "set": {"images": 12, "flagged": 3,
                       "rank_test": {"p_value": 0.0004, "z": 3.3, "auc": 0.734},
                       "binomial_test": {"p_value": 0.02, "null_fpr": 0.015},
                       "member_fraction": {"estimate": 0.23, "low": 0.04, "high": 0.51},
                       "images_needed": 37}})
    }

    #[test]
    fn each_level_keeps_what_it_says_and_no_more() {
        let scores = disclose(full(), Disclosure::Scores);
        assert_eq!(scores["images"][0]["score"], json!(0.93));
        assert_eq!(scores["set"]["rank_test"]["p_value"], json!(0.0004));

        let flags = disclose(full(), Disclosure::Flags);
        assert_eq!(flags["disclosure"], "flags");
        assert_eq!(flags["images"][0], json!({"file": "a", "flagged": true}));
        assert_eq!(flags["set"]["rank_test"], json!({"p_value": "< 0.01", "auc": null}));
        assert_eq!(flags["set"]["binomial_test"]["p_value"], "≥ 0.01");
        assert_eq!(flags["set"]["member_fraction"], json!({"estimate": null, "low": 0.0, "high": 0.6}));
        assert_eq!(flags["set"]["images_needed"], json!(null));
        assert_eq!(flags["set"]["flagged"], 3);

        let sets = disclose(full(), Disclosure::Sets);
        assert_eq!(sets["images"][0], json!({"file": "a"}));
        assert_eq!(sets["set"]["flagged"], json!(null));
        assert_eq!(sets["set"]["member_fraction"]["low"], json!(null));
        assert_eq!(sets["set"]["binomial_test"]["p_value"], json!(null));
    }

    #[test]
    fn bands() {
        assert_eq!(p_band(3e-7, 0.01), "< 0.01");
        assert_eq!(p_band(0.01, 0.01), "≥ 0.01");
        assert_eq!(p_band(f64::NAN, 0.01), "unknown");
        assert_eq!("sets".parse::<Disclosure>(), Ok(Disclosure::Sets));
        assert!("all".parse::<Disclosure>().is_err());
    }
}
