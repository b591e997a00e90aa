//! Cohorts: the closed set of groups a vendor tags samples with (`default` for ordinary
//! traffic, `reference` for known non-members, named suspect cohorts), each counted and
//! tested on its own.

use std::ops::Range;

use crate::config::MAX_COHORTS;

/// One cohort of an auditor, as [`Auditor::cohort`](crate::Auditor::cohort) finds it by name.
/// Cheap to copy; pass it with every [`Auditor::submit_in`](crate::Auditor::submit_in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cohort(u32);

impl Cohort {
    /// The `default` cohort, which [`Auditor::submit`](crate::Auditor::submit) uses.
    pub const DEFAULT: Cohort = Cohort(0);

    /// Its position in the configuration (`default` is 0, then `cohorts` in order).
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The cohort at `index`, for bindings that pass cohorts as numbers; whether the auditor
    /// declares it is checked on submit. `None` past the most cohorts any auditor may have.
    pub fn from_index(index: usize) -> Option<Cohort> {
        (index < MAX_COHORTS).then_some(Cohort(index as u32))
    }

    /// The cohort numbered `n` by a binding, declared or not: submitting with a number the
    /// auditor does not declare is refused and counted, and the error names `n` itself.
    pub fn from_number(n: u32) -> Cohort {
        Cohort(n)
    }
}

/// Splits per-sample cohort indices into runs of one cohort: `(cohort, positions)`.
pub(crate) fn runs(cohorts: &[u16]) -> impl Iterator<Item = (usize, Range<usize>)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        let first = *cohorts.get(start)?;
        let len = cohorts[start..].iter().take_while(|&&c| c == first).count();
        let run = (first as usize, start..start + len);
        start += len;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_every_change() {
        let r: Vec<_> = runs(&[0, 0, 2, 2, 2, 0]).collect();
        assert_eq!(r, vec![(0, 0..2), (2, 2..5), (0, 5..6)]);
        assert_eq!(runs(&[]).count(), 0);
        assert!(Cohort::from_index(MAX_COHORTS).is_none());
        assert_eq!(Cohort::from_number(u32::MAX).index(), u32::MAX as usize);
        assert_eq!(Cohort::from_number(65_536).index(), 65_536, "numbers past u16 are kept, not saturated");
        assert_eq!(Cohort::from_number(3).index(), 3);
    }
}
