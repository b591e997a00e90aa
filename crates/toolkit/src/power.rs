//! How many suspect samples a dataset test needs: the power table `mint dataset-test` and the
//! console report, from the effect seen (normal approximations, null variances).

use serde_json::json;
use statrs::distribution::{ContinuousCDF, Normal};

/// Power levels of the table.
pub const POWERS: [f64; 3] = [0.5, 0.8, 0.95];

/// JSON has no NaN: unknown figures are null.
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Suspect samples needed for p < alpha at each power in [`POWERS`], at the effect seen (normal
/// approximations, null variances): for the rank test against a reference of the size given
/// and against an equal-sized one; for the binomial test at the flag rate seen. `None` where
/// no size suffices (no effect, or a reference too small).
pub fn power_table(auc: f64, reference: usize, alpha: f64, null_fpr: Option<f64>, flag_rate: f64) -> serde_json::Value {
    let normal = Normal::standard();
    let rows: Vec<_> = POWERS
        .iter()
        .map(|&power| {
            let k = normal.inverse_cdf(1.0 - alpha) + normal.inverse_cdf(power);
            let d = auc - 0.5;
            let r = reference as f64;
            // z = d / sqrt((m + r + 1) / (12 m r)) >= k, solved for m.
            let given = (d > 0.0 && 12.0 * r * d * d > k * k).then(|| (k * k * (r + 1.0) / (12.0 * r * d * d - k * k)).ceil());
            // m = r: 12 m² d² >= k² (2m + 1).
            let equal = (d > 0.0).then(|| ((2.0 * k * k + (4.0 * k.powi(4) + 48.0 * d * d * k * k).sqrt()) / (24.0 * d * d)).ceil());
            let binomial = null_fpr.filter(|&p0| flag_rate > p0).map(|p0| {
                let za = normal.inverse_cdf(1.0 - alpha);
                let zb = normal.inverse_cdf(power);
                ((za * (p0 * (1.0 - p0)).sqrt() + zb * (flag_rate * (1.0 - flag_rate)).sqrt()) / (flag_rate - p0)).powi(2).ceil()
            });
            json!({"power": power, "rank_with_this_reference": given, "rank_with_equal_reference": equal, "binomial": binomial})
        })
        .collect();
    json!({"alpha": alpha, "auc": auc, "reference": reference, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_power_table_matches_the_rank_tests_own_z() {
        // At AUC 0.57 with 1,000 against 1,000, the null z is 0.07 / sqrt(2001 / 12e6) ≈ 5.4.
        let z = 0.07 / (2001.0f64 / 12e6).sqrt();
        assert!((z - 5.42).abs() < 0.01, "{z}");
        let t = power_table(0.57, 1000, 0.01, None, 0.0);
        let equal = t["rows"][2]["rank_with_equal_reference"].as_f64().unwrap();
        // k = 2.326 + 1.645 = 3.971; equal sizes need about k² / (6 d²) ≈ 537.
        assert!((520.0..560.0).contains(&equal), "{equal}");
        let given = t["rows"][2]["rank_with_this_reference"].as_f64().unwrap();
        assert!(given < equal, "a reference of 1,000 needs fewer suspects than an equal one of ~537");
        assert!(power_table(0.5, 1000, 0.01, None, 0.0)["rows"][0]["rank_with_equal_reference"].is_null());
        // Too small a reference can never reach it, whatever the suspect set.
        assert!(power_table(0.52, 20, 0.01, None, 0.0)["rows"][2]["rank_with_this_reference"].is_null());
        let b = power_table(0.6, 500, 0.01, Some(0.02), 0.1)["rows"][2]["binomial"].as_f64().unwrap();
        assert!((50.0..150.0).contains(&b), "{b}");
    }
}
