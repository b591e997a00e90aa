//! The power study: how often dataset inference, and the rank test beside it, find a suspect
//! set of members of each size, and how often they find one of non-members (which must stay
//! at or below the level), by resampling from pools of known members and non-members.

use anyhow::{ensure, Result};
use mint_audit::evidence::stats::{rank_test, wilson, ScoreBins};

use super::recipe::{infer, MIN_SET};
use crate::formats::reports::{PowerRow, Rate};
use crate::roc::SplitMix;

impl Rate {
    fn of(k: u64, n: u64) -> Rate {
        let w = wilson(k, n);
        Rate { rate: w.estimate, low: w.low, high: w.high }
    }
}

/// What the power study resamples from.
pub struct Pools<'a> {
    /// Known members (held-out members of the training set).
    pub members: &'a [Vec<f64>],
    /// Known non-members of the members' distribution: every validation set, and both sets of
    /// the null control.
    pub non_members: &'a [Vec<f64>],
}

/// For each size `n`, `draws` times: a suspect set of `n` members against `n` validation
/// texts, both drawn without replacement (power), and a null control whose suspect and
/// validation sets are one draw of `2n` non-members split in two (exchangeable by
/// construction, so its rejection rate is the test's level on this data; two fixed pools of
/// non-members would differ by chance, and resampling them measures that difference, not the
/// level): how often each test gives p < `alpha`. `rank_feature` names a feature in [0, 1] (a
/// head's score) for the rank test beside it.
pub fn study(
    pools: &Pools<'_>,
    names: &[String],
    rank_feature: Option<usize>,
    sizes: &[usize],
    draws: usize,
    alpha: f64,
    seed: u64,
) -> Result<Vec<PowerRow>> {
    let largest = pools.members.len().min(pools.non_members.len() / 2);
    ensure!(draws > 0, "the study needs at least one draw");
    for &n in sizes {
        ensure!(
            (MIN_SET..=largest).contains(&n),
            "a study size of {n} texts: sizes must be from {MIN_SET} to {largest} (as many members, and twice as \
             many non-members, as the pools hold: {} and {})",
            pools.members.len(),
            pools.non_members.len()
        );
    }
    if let Some(j) = rank_feature {
        let inside = |rows: &[Vec<f64>]| rows.iter().all(|r| (0.0..=1.0).contains(&r[j]));
        ensure!(
            inside(pools.members) && inside(pools.non_members),
            "the rank test's feature '{}' must be a score in [0, 1] (a head's)",
            names[j]
        );
    }
    let mut rng = SplitMix::new(seed);
    let mut rows = Vec::with_capacity(sizes.len());
    for &n in sizes {
        let mut hits = [0u64; 4];
        for _ in 0..draws {
            for null in [false, true] {
                let (suspect, validation) = if null {
                    let mut both = draw(pools.non_members, 2 * n, &mut rng);
                    let validation = both.split_off(n);
                    (both, validation)
                } else {
                    (draw(pools.members, n, &mut rng), draw(pools.non_members, n, &mut rng))
                };
                let found = infer(&suspect, &validation, names, rng.next_u64())?.p_value < alpha;
                hits[usize::from(null)] += u64::from(found);
                if let Some(j) = rank_feature {
                    let bins = |rows: &[Vec<f64>]| ScoreBins::from_scores(rows.iter().map(|r| r[j] as f32));
                    let (test, _) = rank_test(&bins(&suspect), &bins(&validation));
                    hits[2 + usize::from(null)] += u64::from(test.p_value < alpha);
                }
            }
        }
        let d = draws as u64;
        rows.push(PowerRow {
            n,
            draws,
            inference: Rate::of(hits[0], d),
            inference_null: Rate::of(hits[1], d),
            rank_test: rank_feature.map(|_| Rate::of(hits[2], d)),
            rank_test_null: rank_feature.map(|_| Rate::of(hits[3], d)),
        });
    }
    Ok(rows)
}

/// `n` rows of `pool` drawn without replacement (a partial shuffle).
fn draw(pool: &[Vec<f64>], n: usize, rng: &mut SplitMix) -> Vec<Vec<f64>> {
    let mut order: Vec<usize> = (0..pool.len()).collect();
    for i in 0..n {
        let j = i + rng.below(pool.len() - i);
        order.swap(i, j);
    }
    order[..n].iter().map(|&i| pool[i].clone()).collect()
}

/// The smallest size whose power reaches `target` (0.8 by convention), if any does.
pub fn texts_needed(rows: &[PowerRow], target: f64, power: impl Fn(&PowerRow) -> Option<Rate>) -> Option<usize> {
    rows.iter().find(|r| power(r).is_some_and(|p| p.rate >= target)).map(|r| r.n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset_inference::synthetic::{names, rows};

    #[test]
    fn keeps_its_level_under_the_null_and_the_study_says_so() {
        // The null control's rejection rate at alpha = 0.05 over 300 draws must be consistent
        // with 0.05 (a failure here means the split leaks B into the fit), and the power with
        // a shift must be high.
        let mut rng = SplitMix::new(2);
        let members = rows(300, 6, 0.4, &mut rng);
        let non_members = rows(600, 6, 0.0, &mut rng);
        let pools = Pools { members: &members, non_members: &non_members };
        let got = study(&pools, &names(6), None, &[20, 200], 300, 0.05, 3).unwrap();
        for row in &got {
            assert!(row.inference_null.low <= 0.05 && row.inference_null.rate <= 0.08, "{row:?}");
        }
        assert!(got[1].inference.rate > 0.9, "{:?}", got[1]);
        assert!(got[0].inference.rate < got[1].inference.rate);
        assert_eq!(texts_needed(&got, 0.8, |r| Some(r.inference)), Some(200));
        assert!(study(&pools, &names(6), None, &[301], 1, 0.05, 3).is_err(), "more than the pools hold");
        assert!(study(&pools, &names(6), Some(0), &[20], 1, 0.05, 3).is_err(), "a rank feature outside [0, 1]");
    }
}
