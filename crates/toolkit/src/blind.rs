//! The distribution-shift control: a "blind" classifier that sees only the raw inputs, never
//! the audited model, trying to tell the member set from the non-member set.
//!
//! If it can, the two sets differ in distribution (another dataset, another camera, another
//! preprocessing), and any head may be detecting that difference instead of membership. It is
//! an L2-regularised logistic regression on coarse image statistics (a pooled thumbnail, an
//! intensity histogram, mean and spread), scored out-of-fold by stratified k-fold
//! cross-validation, so every score comes from a model that never saw that sample.

use crate::data::Images;
use crate::logistic::{dot, fit};
use crate::roc::SplitMix;

const FOLDS: usize = 5;
const HISTOGRAM_BINS: usize = 16;
/// The thumbnail is at most this many cells a side.
const GRID: usize = 7;

/// Out-of-fold blind scores for members and non-members.
pub fn scores(members: &Images, non_members: &Images, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut x: Vec<Vec<f64>> = Vec::with_capacity(members.len() + non_members.len());
    for set in [members, non_members] {
        for i in 0..set.len() {
            x.push(features(set.sample(i), set.shape));
        }
    }
    let y: Vec<f64> = (0..x.len()).map(|i| if i < members.len() { 1.0 } else { 0.0 }).collect();
    standardize(&mut x);

    // Stratified folds: each class shuffled, then dealt round-robin.
    let mut rng = SplitMix::new(seed);
    let mut fold = vec![0usize; x.len()];
    for range in [0..members.len(), members.len()..x.len()] {
        let mut idx: Vec<usize> = range.collect();
        rng.shuffle(&mut idx);
        for (k, i) in idx.into_iter().enumerate() {
            fold[i] = k % FOLDS;
        }
    }
    let mut out = vec![0.0; x.len()];
    for f in 0..FOLDS {
        let train: Vec<usize> = (0..x.len()).filter(|&i| fold[i] != f).collect();
        let w = fit(&x, &y, &train);
        for i in (0..x.len()).filter(|&i| fold[i] == f) {
            out[i] = dot(&w, &x[i]);
        }
    }
    let non = out.split_off(members.len());
    (out, non)
}

/// The per-image half of the control, for sets too small for a classifier (one upload): how
/// far an image's coarse statistics lie from a reference set's, against how far the
/// reference's own images lie. An image beyond [`DomainCheck::QUANTILE`] of the reference's
/// own distances does not look like the reference's domain.
#[derive(Debug, Clone)]
pub struct DomainCheck {
    shape: [usize; 3],
    mean: Vec<f64>,
    sd: Vec<f64>,
    /// The reference's own distance at `QUANTILE`.
    threshold: f64,
}

impl DomainCheck {
    /// Share of the reference's own images that pass.
    pub const QUANTILE: f64 = 0.99;

    /// Fits the check on a reference set (at least two images).
    pub fn fit(reference: &Images) -> DomainCheck {
        let x: Vec<Vec<f64>> = (0..reference.len()).map(|i| features(reference.sample(i), reference.shape)).collect();
        let d = x[0].len() - 1; // the bias is not a statistic
        let n = x.len() as f64;
        let mean: Vec<f64> = (0..d).map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n).collect();
        let sd: Vec<f64> =
            (0..d).map(|j| (x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n).sqrt().max(1e-6)).collect();
        let mut check = DomainCheck { shape: reference.shape, mean, sd, threshold: 0.0 };
        let mut own: Vec<f64> = x.iter().map(|f| check.distance_of(f)).collect();
        own.sort_by(f64::total_cmp);
        check.threshold = own[((own.len() as f64 * Self::QUANTILE).ceil() as usize).min(own.len()) - 1];
        check
    }

    /// The image's distance from the reference (mean squared z-score of its statistics).
    pub fn distance(&self, img: &[f32]) -> f64 {
        self.distance_of(&features(img, self.shape))
    }

    /// Whether the image lies within the reference's own spread.
    pub fn in_domain(&self, img: &[f32]) -> bool {
        self.distance(img) <= self.threshold
    }

    fn distance_of(&self, f: &[f64]) -> f64 {
        let d = self.mean.len();
        (0..d).map(|j| ((f[j] - self.mean[j]) / self.sd[j]).powi(2)).sum::<f64>() / d as f64
    }
}

/// Coarse statistics of one image `[C, H, W]` in [0, 1].
fn features(img: &[f32], [c, h, w]: [usize; 3]) -> Vec<f64> {
    let (gh, gw) = (h.min(GRID), w.min(GRID));
    let mut f = Vec::with_capacity(c * (gh * gw + HISTOGRAM_BINS + 2) + 1);
    for ch in 0..c {
        let plane = &img[ch * h * w..(ch + 1) * h * w];
        // Thumbnail: mean of each grid cell.
        for gy in 0..gh {
            for gx in 0..gw {
                let (y0, y1) = (gy * h / gh, (gy + 1) * h / gh);
                let (x0, x1) = (gx * w / gw, (gx + 1) * w / gw);
                let mut s = 0.0;
                for y in y0..y1 {
                    for x in x0..x1 {
                        s += plane[y * w + x] as f64;
                    }
                }
                f.push(s / ((y1 - y0) * (x1 - x0)) as f64);
            }
        }
        let mut hist = [0.0; HISTOGRAM_BINS];
        for &v in plane {
            hist[((v.clamp(0.0, 1.0) * HISTOGRAM_BINS as f32) as usize).min(HISTOGRAM_BINS - 1)] += 1.0;
        }
        f.extend(hist.iter().map(|n| n / plane.len() as f64));
        let mean = plane.iter().map(|&v| v as f64).sum::<f64>() / plane.len() as f64;
        let var = plane.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / plane.len() as f64;
        f.push(mean);
        f.push(var.sqrt());
    }
    f.push(1.0); // bias (kept at 1 by `standardize`)
    f
}

fn standardize(x: &mut [Vec<f64>]) {
    let d = x[0].len();
    for j in 0..d - 1 {
        let mean = x.iter().map(|r| r[j]).sum::<f64>() / x.len() as f64;
        let sd = (x.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / x.len() as f64).sqrt().max(1e-9);
        for r in x.iter_mut() {
            r[j] = (r[j] - mean) / sd;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roc::auc;

    fn images(n: usize, brightness: f32, seed: u64) -> Images {
        let mut rng = SplitMix::new(seed);
        let data = (0..n * 64).map(|_| (rng.below(1000) as f32 / 1000.0) * brightness).collect();
        Images { data, shape: [1, 8, 8], labels: None }
    }

    #[test]
    fn the_domain_check_passes_the_reference_domain_and_not_another() {
        let reference = images(400, 1.0, 1);
        let check = DomainCheck::fit(&reference);
        let same = images(200, 1.0, 2);
        let passed = (0..200).filter(|&i| check.in_domain(same.sample(i))).count();
        assert!(passed >= 190, "{passed} of 200 images of the same distribution pass");
        let dark = images(50, 0.3, 3);
        assert_eq!((0..50).filter(|&i| check.in_domain(dark.sample(i))).count(), 0, "darker images must fail");
    }

    #[test]
    fn same_distribution_is_near_chance_and_shift_is_found() {
        let (p, n) = scores(&images(200, 1.0, 1), &images(200, 1.0, 2), 0);
        let same = auc(&p, &n);
        assert!((0.35..0.65).contains(&same), "same distribution: {same}");
        let (p, n) = scores(&images(200, 1.0, 1), &images(200, 0.8, 2), 0);
        let shifted = auc(&p, &n);
        assert!(shifted > 0.9, "brightness shift: {shifted}");
    }
}
