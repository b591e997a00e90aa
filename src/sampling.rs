//! Deterministic 1-in-N sampling by sample id.

/// Chooses one sample id in `one_in`, the same ids on every call, thread and replica.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    one_in: u64,
    salt: u64,
}

impl Sampler {
    pub fn new(one_in: u64, salt: u64) -> Sampler {
        Sampler { one_in: one_in.max(1), salt }
    }

    /// Whether the sample with this id is audited.
    #[inline]
    pub fn selects(&self, id: u64) -> bool {
        self.one_in == 1 || mix(id ^ self.salt).is_multiple_of(self.one_in)
    }
}

/// SplitMix64's finaliser: consecutive ids land far apart, so 1-in-N holds on sequential ids.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_in_n_is_close_to_n_and_deterministic() {
        let s = Sampler::new(10, 0);
        let chosen: Vec<u64> = (0..100_000u64).filter(|&id| s.selects(id)).collect();
        assert!((9_500..10_500).contains(&chosen.len()), "{}", chosen.len());
        assert!(chosen.iter().all(|&id| s.selects(id)));
        let salted = Sampler::new(10, 42);
        let other = (0..100_000u64).filter(|&id| salted.selects(id)).count();
        let overlap = chosen.iter().filter(|&&id| salted.selects(id)).count();
        assert!((9_500..10_500).contains(&other));
        assert!(overlap < 2_000, "salt must choose another subset, overlap {overlap}");
        assert!((0..1000).all(|id| Sampler::new(1, 7).selects(id)));
    }
}
