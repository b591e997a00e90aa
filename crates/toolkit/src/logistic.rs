//! L2-regularised logistic regression on standardised features, by full-batch gradient
//! descent: the blind control's classifier and dataset inference's aggregator. Rows carry
//! their bias as a last column of ones.

/// The linear score of a row under weights `w` (the bias last in both).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Logistic regression by full-batch gradient descent (the loss is convex and the data
/// standardised, so a fixed step converges), L2 penalty 1e-2 on all but the bias, over the
/// rows of `x` listed in `rows`, with labels `y` (1 or 0).
pub fn fit(x: &[Vec<f64>], y: &[f64], rows: &[usize]) -> Vec<f64> {
    let d = x[0].len();
    let mut w = vec![0.0; d];
    let (lr, l2, iters) = (0.5, 1e-2, 300);
    let mut grad = vec![0.0; d];
    for _ in 0..iters {
        grad.iter_mut().for_each(|g| *g = 0.0);
        for &i in rows {
            let p = 1.0 / (1.0 + (-dot(&w, &x[i])).exp());
            let e = p - y[i];
            for (g, xi) in grad.iter_mut().zip(&x[i]) {
                *g += e * xi;
            }
        }
        for j in 0..d {
            let reg = if j + 1 < d { l2 * w[j] } else { 0.0 };
            w[j] -= lr * (grad[j] / rows.len() as f64 + reg);
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_what_a_line_separates_and_learns_the_sign() {
        // One feature, members above non-members: a positive weight, scores ordered.
        let x: Vec<Vec<f64>> =
            (0..40).map(|i| vec![if i < 20 { 1.0 } else { -1.0 } + (i % 5) as f64 * 0.1, 1.0]).collect();
        let y: Vec<f64> = (0..40).map(|i| if i < 20 { 1.0 } else { 0.0 }).collect();
        let rows: Vec<usize> = (0..40).collect();
        let w = fit(&x, &y, &rows);
        assert!(w[0] > 1.0, "{w:?}");
        assert!(dot(&w, &x[0]) > 0.0 && dot(&w, &x[39]) < 0.0);
    }
}
