//! f32 max kernels, compiled once per instruction set and picked at run time.
//!
//! The library ships as one binary, so the same portable code is compiled three times
//! (x86-64 baseline, AVX2, AVX-512F) behind `#[target_feature]` and the best one the CPU
//! supports is chosen on first use. The loops are written so that LLVM turns them into
//! packed `max` instructions: fixed-size blocks, independent accumulators, no early exits.
//!
//! Every kernel also sums what it reads. The sum is finite exactly when every input was
//! finite (unless it overflows, which needs values beyond ~1e33); a non-finite sum only
//! makes the caller re-scan that sample exactly, so the common path pays one add per vector.

/// Floats per unrolled step of the plane kernel: four AVX2 registers, two AVX-512 registers.
const PLANE_BLOCK: usize = 32;
/// Channels held in registers by the row kernel.
const ROW_BLOCK: usize = 64;

/// `acc[k] = max(acc[k], max(src[k*hw .. (k+1)*hw]))` for every plane `k`.
/// Returns `false` when the values read may include NaN or infinities.
pub(crate) type PlanesFn = fn(src: &[f32], hw: usize, acc: &mut [f32]) -> bool;
/// `acc[j] = max(acc[j], src[r*c + j])` for every row `r` of `c = acc.len()` channels.
/// Returns `false` when the values read may include NaN or infinities.
pub(crate) type RowsFn = fn(src: &[f32], acc: &mut [f32]) -> bool;

/// An instruction set the kernels were compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// The target's baseline (SSE2 on x86-64, NEON on aarch64).
    Baseline,
    Avx2,
    Avx512,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512f",
        }
    }

    /// Whether this CPU can run kernels compiled for `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every instruction set this CPU supports, best last.
    pub fn available() -> Vec<Isa> {
        [Isa::Baseline, Isa::Avx2, Isa::Avx512].into_iter().filter(|i| i.is_available()).collect()
    }

    /// The best instruction set this CPU supports.
    pub fn best() -> Isa {
        *Isa::available().last().expect("baseline is always available")
    }
}

/// The kernels of one instruction set.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub isa: Isa,
    pub planes: PlanesFn,
    pub rows: RowsFn,
}

impl Kernels {
    /// The kernels for `isa`, or `None` where this CPU lacks it.
    pub(crate) fn for_isa(isa: Isa) -> Option<Kernels> {
        if !isa.is_available() {
            return None;
        }
        Some(match isa {
            Isa::Baseline => Kernels { isa, planes: planes_baseline, rows: rows_baseline },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Kernels { isa, planes: x86::planes_avx2, rows: x86::rows_avx2 },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Kernels { isa, planes: x86::planes_avx512, rows: x86::rows_avx512 },
            #[cfg(not(target_arch = "x86_64"))]
            _ => return None,
        })
    }

    /// The best kernels for this CPU, chosen once.
    pub(crate) fn best() -> &'static Kernels {
        static BEST: std::sync::OnceLock<Kernels> = std::sync::OnceLock::new();
        BEST.get_or_init(|| Kernels::for_isa(Isa::best()).expect("best ISA is available"))
    }
}

fn planes_baseline(src: &[f32], hw: usize, acc: &mut [f32]) -> bool {
    planes_generic(src, hw, acc)
}

fn rows_baseline(src: &[f32], acc: &mut [f32]) -> bool {
    rows_generic(src, acc)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    // SAFETY (all four wrappers): `Kernels::for_isa` hands these out only after
    // `Isa::is_available` confirmed the CPU has the feature the inner function was compiled for.
    pub(super) fn planes_avx2(src: &[f32], hw: usize, acc: &mut [f32]) -> bool {
        #[target_feature(enable = "avx2")]
        fn inner(src: &[f32], hw: usize, acc: &mut [f32]) -> bool {
            super::planes_generic(src, hw, acc)
        }
        unsafe { inner(src, hw, acc) }
    }

    pub(super) fn rows_avx2(src: &[f32], acc: &mut [f32]) -> bool {
        #[target_feature(enable = "avx2")]
        fn inner(src: &[f32], acc: &mut [f32]) -> bool {
            super::rows_generic(src, acc)
        }
        unsafe { inner(src, acc) }
    }

    pub(super) fn planes_avx512(src: &[f32], hw: usize, acc: &mut [f32]) -> bool {
        #[target_feature(enable = "avx512f")]
        fn inner(src: &[f32], hw: usize, acc: &mut [f32]) -> bool {
            super::planes_generic(src, hw, acc)
        }
        unsafe { inner(src, hw, acc) }
    }

    pub(super) fn rows_avx512(src: &[f32], acc: &mut [f32]) -> bool {
        #[target_feature(enable = "avx512f")]
        fn inner(src: &[f32], acc: &mut [f32]) -> bool {
            super::rows_generic(src, acc)
        }
        unsafe { inner(src, acc) }
    }
}

/// `max` as a compare and select, which LLVM lowers to one packed `max` instruction
/// (NaN in `x` leaves `m` unchanged; the sum check catches it).
#[inline(always)]
fn max_step<const B: usize>(m: &mut [f32; B], s: &mut [f32; B], x: &[f32; B]) {
    for i in 0..B {
        m[i] = if x[i] > m[i] { x[i] } else { m[i] };
        s[i] += x[i];
    }
}

#[inline(always)]
fn hmax<const B: usize>(m: &[f32; B]) -> f32 {
    m.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

#[inline(always)]
fn hsum<const B: usize>(s: &[f32; B]) -> f32 {
    s.iter().sum()
}

/// Max of one contiguous run, adding what it reads into `*check`.
#[inline(always)]
fn run_max<const B: usize>(run: &[f32], check: &mut f32) -> f32 {
    debug_assert!(run.len() >= B);
    let mut m = [f32::NEG_INFINITY; B];
    let mut s = [0f32; B];
    let mut blocks = run.chunks_exact(B);
    for block in &mut blocks {
        max_step(&mut m, &mut s, block.try_into().unwrap());
    }
    if !blocks.remainder().is_empty() {
        // One more block ending at the end of the run: it re-reads a few elements, which
        // cannot change a max, and spares a scalar tail loop.
        max_step(&mut m, &mut s, run[run.len() - B..].try_into().unwrap());
    }
    *check += hsum(&s);
    hmax(&m)
}

#[inline(always)]
fn planes_generic(src: &[f32], hw: usize, acc: &mut [f32]) -> bool {
    debug_assert_eq!(src.len(), hw * acc.len());
    let mut check = 0f32;
    if hw == 0 {
        return true;
    }
    for (a, plane) in acc.iter_mut().zip(src.chunks_exact(hw)) {
        let m = if hw >= PLANE_BLOCK {
            run_max::<PLANE_BLOCK>(plane, &mut check)
        } else if hw >= 8 {
            run_max::<8>(plane, &mut check)
        } else {
            let mut m = f32::NEG_INFINITY;
            for &x in plane {
                m = if x > m { x } else { m };
                check += x;
            }
            m
        };
        *a = if m > *a { m } else { *a };
    }
    check.is_finite()
}

/// Running max of `B` channels starting at `j`, over every row.
#[inline(always)]
fn rows_block<const B: usize>(src: &[f32], c: usize, j: usize, acc: &mut [f32], check: &mut f32) {
    let mut m: [f32; B] = acc[j..j + B].try_into().unwrap();
    let mut s = [0f32; B];
    for row in src.chunks_exact(c) {
        max_step(&mut m, &mut s, row[j..j + B].try_into().unwrap());
    }
    acc[j..j + B].copy_from_slice(&m);
    *check += hsum(&s);
}

#[inline(always)]
fn rows_generic(src: &[f32], acc: &mut [f32]) -> bool {
    let c = acc.len();
    if c == 0 {
        return true;
    }
    debug_assert_eq!(src.len() % c, 0);
    let mut check = 0f32;
    // The widest block that fits keeps the most channels in registers per pass over the rows.
    match c {
        _ if c >= ROW_BLOCK => rows_blocks::<ROW_BLOCK>(src, acc, &mut check),
        32.. => rows_blocks::<32>(src, acc, &mut check),
        16.. => rows_blocks::<16>(src, acc, &mut check),
        8.. => rows_blocks::<8>(src, acc, &mut check),
        _ => {
            for row in src.chunks_exact(c) {
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a = if x > *a { x } else { *a };
                    check += x;
                }
            }
        }
    }
    check.is_finite()
}

#[inline(always)]
fn rows_blocks<const B: usize>(src: &[f32], acc: &mut [f32], check: &mut f32) {
    let c = acc.len();
    let mut j = 0;
    while j + B <= c {
        rows_block::<B>(src, c, j, acc, check);
        j += B;
    }
    if j < c {
        // Overlapping last block: channels already final are maxed with the same rows again.
        rows_block::<B>(src, c, c - B, acc, check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_planes(src: &[f32], hw: usize) -> Vec<f32> {
        src.chunks(hw).map(|p| p.iter().cloned().fold(f32::NEG_INFINITY, f32::max)).collect()
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
            })
            .collect()
    }

    #[test]
    fn every_isa_matches_the_reference_on_awkward_sizes() {
        for isa in Isa::available() {
            let k = Kernels::for_isa(isa).unwrap();
            for &(c, hw) in &[(1, 1), (3, 5), (7, 8), (5, 9), (64, 49), (13, 31), (9, 33), (4, 3136), (70, 17)] {
                let src = pseudo_random(c * hw, (c * 1000 + hw) as u64);
                let mut acc = vec![f32::NEG_INFINITY; c];
                assert!((k.planes)(&src, hw, &mut acc));
                assert_eq!(acc, reference_planes(&src, hw), "{isa:?} planes c={c} hw={hw}");

                // The same data read as rows of c channels (the transpose of the planes).
                let mut rows = vec![0f32; c * hw];
                for ch in 0..c {
                    for p in 0..hw {
                        rows[p * c + ch] = src[ch * hw + p];
                    }
                }
                let mut acc = vec![f32::NEG_INFINITY; c];
                assert!((k.rows)(&rows, &mut acc));
                assert_eq!(acc, reference_planes(&src, hw), "{isa:?} rows c={c} hw={hw}");
            }
        }
    }

    #[test]
    fn non_finite_values_are_flagged_wherever_they_sit() {
        for isa in Isa::available() {
            let k = Kernels::for_isa(isa).unwrap();
            for &(c, hw) in &[(3, 5), (64, 49), (70, 17), (2, 100)] {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    for pos in [0, c * hw / 2, c * hw - 1] {
                        let mut src = pseudo_random(c * hw, 7);
                        src[pos] = bad;
                        let mut acc = vec![f32::NEG_INFINITY; c];
                        assert!(!(k.planes)(&src, hw, &mut acc), "{isa:?} planes {bad} at {pos}");
                        let mut acc = vec![f32::NEG_INFINITY; c];
                        assert!(!(k.rows)(&src, &mut acc), "{isa:?} rows {bad} at {pos}");
                    }
                }
            }
        }
    }
}
