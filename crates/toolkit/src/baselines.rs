//! Baselines that need no head: scores computed from the audited model's outcome alone
//! (its confidence, and its loss when labels exist), beside the head's in every eval report.

/// `log Σ exp(l)` of a logit row, shifted by its max so that nothing overflows; also the max.
fn log_sum_exp(logits: &[f32]) -> (f64, f64) {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    (m + logits.iter().map(|&l| (l as f64 - m).exp()).sum::<f64>().ln(), m)
}

/// Largest log-probability of a logit row (a label-free confidence score).
pub fn max_log_softmax(logits: &[f32]) -> f64 {
    let (lse, m) = log_sum_exp(logits);
    m - lse
}

/// Cross-entropy of a logit row against class `y`.
pub fn cross_entropy(logits: &[f32], y: usize) -> f64 {
    log_sum_exp(logits).0 - logits.get(y).copied().unwrap_or(f32::NAN) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_and_loss_are_consistent() {
        let row = [2.0f32, 0.0, -1.0];
        let conf = max_log_softmax(&row);
        assert!((conf + cross_entropy(&row, 0)).abs() < 1e-12);
        assert!(cross_entropy(&row, 2) > cross_entropy(&row, 0));
    }
}
