//! The recipe of one dataset inference: halves, the scale and linear model learnt on A, and
//! Welch's test on B (see the module above for the method and its assumptions).

use anyhow::{ensure, Result};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::formats::reports::{Inference, Sizes};
use crate::logistic::{dot, fit};
use crate::roc::{auc, SplitMix};

/// The share of each tail of A clipped away, per feature (the paper's 2.5%).
pub const CLIP: f64 = 0.025;
/// The fewest texts in a set: two per half, for a variance.
pub const MIN_SET: usize = 4;

/// Runs the test on `suspect` and `validation` rows (features in the order of `names`),
/// split by `seed`.
pub fn infer(suspect: &[Vec<f64>], validation: &[Vec<f64>], names: &[String], seed: u64) -> Result<Inference> {
    ensure!(
        suspect.len() >= MIN_SET && validation.len() >= MIN_SET,
        "dataset inference needs at least {MIN_SET} texts in each set (two per half); there are {} suspect and {} validation",
        suspect.len(),
        validation.len()
    );
    ensure!(
        suspect.iter().chain(validation).all(|r| r.len() == names.len()),
        "every row needs one value per feature ({})",
        names.len()
    );
    let mut rng = SplitMix::new(seed);
    let (suspect_a, suspect_b) = halves(suspect, &mut rng);
    let (validation_a, validation_b) = halves(validation, &mut rng);

    let fitted = Scale::fit(suspect_a.iter().chain(&validation_a).copied());
    let mut x: Vec<Vec<f64>> = suspect_a.iter().chain(&validation_a).map(|r| fitted.apply(r)).collect();
    let y: Vec<f64> = (0..x.len()).map(|i| if i < suspect_a.len() { 1.0 } else { 0.0 }).collect();
    let rows: Vec<usize> = (0..x.len()).collect();
    let w = fit(&x, &y, &rows);
    x.clear();

    let score = |r: &Vec<f64>| dot(&w, &fitted.apply(r));
    let s: Vec<f64> = suspect_b.iter().map(|r| score(r)).collect();
    let v: Vec<f64> = validation_b.iter().map(|r| score(r)).collect();
    let (t, df, p_value) = welch_greater(&s, &v);
    let (t, df) = if df.is_finite() { (Some(t), Some(df)) } else { (None, None) };
    Ok(Inference {
        p_value,
        t,
        df,
        fit: Sizes { suspect: suspect_a.len(), validation: validation_a.len() },
        test: Sizes { suspect: s.len(), validation: v.len() },
        held_out_auc: auc(&s, &v),
        weights: names.iter().cloned().zip(w.iter().copied()).collect(),
    })
}

/// A random half of `rows` (the smaller, when odd) and the rest.
fn halves<'a>(rows: &'a [Vec<f64>], rng: &mut SplitMix) -> (Vec<&'a Vec<f64>>, Vec<&'a Vec<f64>>) {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    rng.shuffle(&mut order);
    let (a, b) = order.split_at(rows.len() / 2);
    (a.iter().map(|&i| &rows[i]).collect(), b.iter().map(|&i| &rows[i]).collect())
}

/// Per-feature clipping bounds, mean and spread, learnt from the fitting half.
struct Scale {
    low: Vec<f64>,
    high: Vec<f64>,
    mean: Vec<f64>,
    sd: Vec<f64>,
}

impl Scale {
    fn fit<'a>(rows: impl Iterator<Item = &'a Vec<f64>>) -> Scale {
        let rows: Vec<&Vec<f64>> = rows.collect();
        let d = rows[0].len();
        let n = rows.len();
        let mut scale = Scale { low: vec![0.0; d], high: vec![0.0; d], mean: vec![0.0; d], sd: vec![0.0; d] };
        for j in 0..d {
            let mut column: Vec<f64> = rows.iter().map(|r| r[j]).collect();
            column.sort_by(f64::total_cmp);
            let at = |q: f64| column[((q * (n - 1) as f64).round() as usize).min(n - 1)];
            let (low, high) = (at(CLIP), at(1.0 - CLIP));
            let clipped = column.iter().map(|x| x.clamp(low, high));
            let mean = clipped.clone().sum::<f64>() / n as f64;
            let var = clipped.map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            (scale.low[j], scale.high[j], scale.mean[j], scale.sd[j]) = (low, high, mean, var.sqrt());
        }
        scale
    }

    /// A row clipped and standardised, with the bias as a last column; a feature without
    /// spread on A reads 0.
    fn apply(&self, row: &[f64]) -> Vec<f64> {
        let mut out: Vec<f64> = row
            .iter()
            .enumerate()
            .map(|(j, &x)| {
                if self.sd[j] > 1e-12 {
                    (x.clamp(self.low[j], self.high[j]) - self.mean[j]) / self.sd[j]
                } else {
                    0.0
                }
            })
            .collect();
        out.push(1.0);
        out
    }
}

/// Welch's one-sided t-test that `a`'s mean exceeds `b`'s: (t, degrees of freedom, p-value).
/// Both without spread: p = 0 when `a`'s mean is higher, else 1.
pub fn welch_greater(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let moments = |x: &[f64]| {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (n, mean, var)
    };
    let ((na, ma, va), (nb, mb, vb)) = (moments(a), moments(b));
    let (ea, eb) = (va / na, vb / nb);
    let se2 = ea + eb;
    if se2 <= 0.0 {
        return if ma > mb { (f64::INFINITY, f64::NAN, 0.0) } else { (0.0, f64::NAN, 1.0) };
    }
    let t = (ma - mb) / se2.sqrt();
    let df = se2 * se2 / (ea * ea / (na - 1.0) + eb * eb / (nb - 1.0));
    let p = StudentsT::new(0.0, 1.0, df).map(|d| d.sf(t)).unwrap_or(f64::NAN);
    (t, df, p.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset_inference::synthetic::{names, rows};

    #[test]
    fn welch_matches_scipy() {
        // scipy.stats.ttest_ind(a, b, equal_var=False, alternative="greater"), scipy 1.10.1:
        // t = 1.8085816934646564, p = 0.056924404451569856; Welch–Satterthwaite df = 6.934956220533051.
        let (a, b) = ([3.0, 4.0, 5.0, 6.0, 7.0], [2.0, 3.0, 4.0, 4.5]);
        let (t, df, p) = welch_greater(&a, &b);
        assert!((t - 1.8085816934646564).abs() < 1e-12, "{t}");
        assert!((df - 6.934956220533051).abs() < 1e-9, "{df}");
        assert!((p - 0.056924404451569856).abs() < 1e-9, "{p}");
        assert_eq!(welch_greater(&[1.0, 1.0], &[0.0, 0.0]).2, 0.0);
        assert_eq!(welch_greater(&[0.0, 0.0], &[0.0, 0.0]).2, 1.0);
    }

    #[test]
    fn finds_a_weak_signal_spread_over_features_and_is_reproducible() {
        let mut rng = SplitMix::new(1);
        let (members, validation) = (rows(400, 8, 0.25, &mut rng), rows(400, 8, 0.0, &mut rng));
        let got = infer(&members, &validation, &names(8), 7).unwrap();
        assert!(got.p_value < 1e-3, "{got:?}");
        assert_eq!((got.fit.suspect, got.test.suspect), (200, 200));
        assert!(got.weights["f0"] > 0.1 && got.weights["f1"] > 0.1, "{:?}", got.weights);
        assert_eq!(infer(&members, &validation, &names(8), 7).unwrap(), got, "same seed, same outcome");
        assert!(infer(&members[..3], &validation, &names(8), 7).is_err());
    }
}
