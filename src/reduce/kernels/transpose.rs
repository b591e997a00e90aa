//! Channels-last maps (`[H·W, C]` rows) into channel planes (`[C, H·W]`, the layout CNN heads
//! take), widened to f32 on the way: the copy the CNN path makes on the vendor's thread.
//!
//! With AVX2 (and so on AVX-512 machines too) the map moves in 8 × 8 blocks held in registers:
//! eight rows of eight channels are loaded (widened by the load for f16 and bf16), transposed
//! with 24 shuffles and stored as eight runs of eight pixels, one per channel plane. Elsewhere a
//! tiled scalar loop does the same. Both return a finiteness hint like the max kernels: a sum of
//! what was read, finite exactly when every value was (unless it overflows, which only makes
//! the caller look again exactly).

use std::mem::MaybeUninit;

use super::simd::Elem;

/// Pixels per tile: the rows of a tile (about 16 KiB of them, 8 to 64 rows, a whole number of
/// blocks) stay in L1 while every channel block reads them. Rows of many channels are long and
/// often a power of two apart, so a fixed tile of many rows would evict itself.
fn tile_pixels(c: usize) -> usize {
    ((16 << 10) / (c.max(1) * 4)).clamp(8, 64) / 8 * 8
}

fn check_lengths(src_len: usize, c: usize, hw: usize, dst_len: usize) {
    let len = c.checked_mul(hw).expect("map size overflows");
    assert!(src_len >= len && dst_len >= len, "transpose: buffers shorter than {c} × {hw}");
}

/// The portable transposes, for the baseline's kernel table.
pub(in crate::reduce::kernels) mod portable {
    use std::mem::MaybeUninit;

    use half::{bf16, f16};

    pub(in crate::reduce::kernels) fn f32(src: &[f32], c: usize, hw: usize, dst: &mut [MaybeUninit<f32>]) -> bool {
        super::scalar(src, c, hw, dst)
    }
    pub(in crate::reduce::kernels) fn f16(src: &[f16], c: usize, hw: usize, dst: &mut [MaybeUninit<f32>]) -> bool {
        super::scalar(src, c, hw, dst)
    }
    pub(in crate::reduce::kernels) fn bf16(src: &[bf16], c: usize, hw: usize, dst: &mut [MaybeUninit<f32>]) -> bool {
        super::scalar(src, c, hw, dst)
    }
}

/// The portable transpose: tiles of `TILE_PIXELS` pixels, element by element.
fn scalar<E: Elem>(src: &[E], c: usize, hw: usize, dst: &mut [MaybeUninit<f32>]) -> bool {
    check_lengths(src.len(), c, hw, dst.len());
    let mut sum = 0f32;
    let tile = tile_pixels(c);
    for p0 in (0..hw).step_by(tile) {
        let p1 = (p0 + tile).min(hw);
        for ch in 0..c {
            for p in p0..p1 {
                let x = src[p * c + ch].widen();
                dst[ch * hw + p].write(x);
                sum += x;
            }
        }
    }
    sum.is_finite()
}

#[cfg(target_arch = "x86_64")]
pub(in crate::reduce::kernels) mod avx2 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use half::{bf16, f16};

    use super::{check_lengths, tile_pixels};
    use crate::reduce::kernels::avx2::Avx2;
    use crate::reduce::kernels::simd::{Elem, Simd};

    /// Transposes eight registers of eight lanes in place.
    #[inline(always)]
    unsafe fn transpose8(r: &mut [__m256; 8]) {
        // SAFETY: register shuffles only; the caller runs with AVX enabled.
        unsafe {
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xee>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
            r[0] = _mm256_permute2f128_ps::<0x20>(u0, u4);
            r[1] = _mm256_permute2f128_ps::<0x20>(u1, u5);
            r[2] = _mm256_permute2f128_ps::<0x20>(u2, u6);
            r[3] = _mm256_permute2f128_ps::<0x20>(u3, u7);
            r[4] = _mm256_permute2f128_ps::<0x31>(u0, u4);
            r[5] = _mm256_permute2f128_ps::<0x31>(u1, u5);
            r[6] = _mm256_permute2f128_ps::<0x31>(u2, u6);
            r[7] = _mm256_permute2f128_ps::<0x31>(u3, u7);
        }
    }

    /// The 8 × 8 block transpose over the whole map, with the edges (channels or pixels short
    /// of a block) element by element.
    #[inline(always)]
    unsafe fn blocks<E: Elem>(src: &[E], c: usize, hw: usize, dst: &mut [MaybeUninit<f32>]) -> bool {
        check_lengths(src.len(), c, hw, dst.len());
        let (c8, hw8) = (c / 8 * 8, hw / 8 * 8);
        let s = src.as_ptr();
        let d = dst.as_mut_ptr() as *mut f32;
        // SAFETY: every block reads rows `p..p + 8 <= hw8 <= hw` at channels `ch..ch + 8 <= c8 <= c`
        // of `src` and writes planes `ch..ch + 8` at pixels `p..p + 8` of `dst`, both `c × hw`
        // long (checked above); AVX2 and F16C are enabled by the callers.
        unsafe {
            let mut sums = [_mm256_setzero_ps(); 2];
            let tile = tile_pixels(c);
            for p0 in (0..hw8).step_by(tile) {
                let p1 = (p0 + tile).min(hw8);
                for ch in (0..c8).step_by(8) {
                    for p in (p0..p1).step_by(8) {
                        let mut r = [_mm256_setzero_ps(); 8];
                        for (i, ri) in r.iter_mut().enumerate() {
                            *ri = E::load::<Avx2>(s.add((p + i) * c + ch));
                        }
                        sums[0] =
                            _mm256_add_ps(sums[0], _mm256_add_ps(_mm256_add_ps(r[0], r[1]), _mm256_add_ps(r[2], r[3])));
                        sums[1] =
                            _mm256_add_ps(sums[1], _mm256_add_ps(_mm256_add_ps(r[4], r[5]), _mm256_add_ps(r[6], r[7])));
                        transpose8(&mut r);
                        for (j, rj) in r.iter().enumerate() {
                            _mm256_storeu_ps(d.add((ch + j) * hw + p), *rj);
                        }
                    }
                }
            }
            let mut edge = 0f32;
            // Channels past the last whole block, for every pixel; then the pixels past the
            // last whole block, for the block channels.
            for p in 0..hw {
                for ch in c8..c {
                    let x = (*s.add(p * c + ch)).widen();
                    d.add(ch * hw + p).write(x);
                    edge += x;
                }
            }
            for p in hw8..hw {
                for ch in 0..c8 {
                    let x = (*s.add(p * c + ch)).widen();
                    d.add(ch * hw + p).write(x);
                    edge += x;
                }
            }
            Avx2::hsum(_mm256_add_ps(sums[0], sums[1])).is_finite() && edge.is_finite()
        }
    }

    macro_rules! transpose_fn {
        ($name:ident, $elem:ty) => {
            pub(in crate::reduce::kernels) fn $name(
                src: &[$elem],
                c: usize,
                hw: usize,
                dst: &mut [MaybeUninit<f32>],
            ) -> bool {
                #[target_feature(enable = "avx2,f16c")]
                unsafe fn inner(src: &[$elem], c: usize, hw: usize, dst: &mut [MaybeUninit<f32>]) -> bool {
                    // SAFETY: this function runs with the features `blocks` needs.
                    unsafe { blocks::<$elem>(src, c, hw, dst) }
                }
                // SAFETY: `Kernels::for_isa` hands these out only where AVX2 and F16C are
                // available (the AVX2 and AVX-512 tables carry them, and both ISAs require them).
                unsafe { inner(src, c, hw, dst) }
            }
        };
    }
    transpose_fn!(f32, f32);
    transpose_fn!(f16, f16);
    transpose_fn!(bf16, bf16);
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::*;
    use crate::reduce::table::Isa;

    #[test]
    fn every_isa_transposes_every_element_type_exactly() {
        for isa in Isa::available() {
            let t = crate::reduce::kernels::for_isa(isa).unwrap();
            for &(c, hw) in &[(1, 1), (3, 5), (8, 8), (16, 49), (13, 70), (64, 64), (9, 200), (130, 17), (0, 4), (4, 0)]
            {
                let rows: Vec<f32> = (0..c * hw).map(|i| (i as f32) * 0.5 - 100.0).collect();
                let expected: Vec<f32> = (0..c * hw).map(|i| rows[(i % hw.max(1)) * c + i / hw.max(1)]).collect();
                let run = |f: &dyn Fn(&mut [MaybeUninit<f32>]) -> bool| {
                    let mut dst = vec![MaybeUninit::new(f32::NAN); c * hw];
                    assert!(f(&mut dst), "{isa:?} {c}×{hw}: finite map flagged");
                    // SAFETY: filled with NaN above; every element is then a valid f32.
                    dst.iter().map(|x| unsafe { x.assume_init() }).collect::<Vec<f32>>()
                };
                assert_eq!(run(&|d| (t.transpose_f32)(&rows, c, hw, d)), expected, "{isa:?} f32 {c}×{hw}");
                let h: Vec<f16> = rows.iter().map(|&x| f16::from_f32(x)).collect();
                let want: Vec<f32> = expected.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
                assert_eq!(run(&|d| (t.transpose_f16)(&h, c, hw, d)), want, "{isa:?} f16 {c}×{hw}");
                let b: Vec<bf16> = rows.iter().map(|&x| bf16::from_f32(x)).collect();
                let want: Vec<f32> = expected.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
                assert_eq!(run(&|d| (t.transpose_bf16)(&b, c, hw, d)), want, "{isa:?} bf16 {c}×{hw}");
                if c * hw > 0 {
                    let mut bad = rows.clone();
                    bad[c * hw - 1] = f32::NAN;
                    let mut dst = vec![MaybeUninit::new(0f32); c * hw];
                    assert!(!(t.transpose_f32)(&bad, c, hw, &mut dst), "{isa:?} {c}×{hw}: NaN not flagged");
                }
            }
        }
    }
}
