//! Sums for mean pooling of token sequences, generic over [`Simd`] like the max kernels and
//! instantiated per instruction set by `kernel_set!`. A NaN or an infinity among the values
//! makes the sum non-finite, which is how the caller finds it: no separate check is needed.

use super::simd::{Elem, Simd};

/// `acc[j] += src[r * c + j]` over every row `r` of `c = acc.len()` channels (channels-last
/// tokens), eight registers of channels at a time (as the max kernels: fewer passes over the
/// rows), one register, then one channel at a time.
#[inline(always)]
pub(super) unsafe fn sum_rows<S: Simd, E: Elem>(src: &[E], acc: &mut [f32]) {
    let c = acc.len();
    if c == 0 {
        return;
    }
    assert_eq!(src.len() % c, 0);
    let rows = src.len() / c;
    let (base, out) = (src.as_ptr(), acc.as_mut_ptr());
    let mut j = 0;
    // SAFETY: every load reads channels `j..j + k × W` inside a row (`j + k × W <= c`) of one
    // of `rows` whole rows; every store writes inside `acc`.
    unsafe {
        while j + 8 * S::W <= c {
            let mut s = [0, 1, 2, 3, 4, 5, 6, 7].map(|k| S::load_f32(out.add(j + k * S::W)));
            for r in 0..rows {
                let row = base.add(r * c + j);
                for (k, sk) in s.iter_mut().enumerate() {
                    *sk = S::add(*sk, E::load::<S>(row.add(k * S::W)));
                }
            }
            for (k, sk) in s.iter().enumerate() {
                S::store(out.add(j + k * S::W), *sk);
            }
            j += 8 * S::W;
        }
        while j + S::W <= c {
            let mut s = S::load_f32(out.add(j));
            for r in 0..rows {
                s = S::add(s, E::load::<S>(base.add(r * c + j)));
            }
            S::store(out.add(j), s);
            j += S::W;
        }
    }
    for (k, a) in acc.iter_mut().enumerate().skip(j) {
        *a += src[k..].iter().step_by(c).map(|e| e.widen()).sum::<f32>();
    }
}

/// The sum of a contiguous run of values (one channel's tokens, channels-first), in four
/// registers, then one, then one value at a time.
#[inline(always)]
pub(super) unsafe fn sum_run<S: Simd, E: Elem>(src: &[E]) -> f32 {
    let p = src.as_ptr();
    let block = 4 * S::W;
    let full = src.len() / block * block;
    // SAFETY: `block` elements readable at `p + i` for every `i + block <= len`.
    let sum = unsafe {
        let mut s = [S::splat(0.0); 4];
        let mut i = 0;
        while i < full {
            for (k, sk) in s.iter_mut().enumerate() {
                *sk = S::add(*sk, E::load::<S>(p.add(i + k * S::W)));
            }
            i += block;
        }
        S::hsum(S::add(S::add(s[0], s[1]), S::add(s[2], s[3])))
    };
    sum + src[full..].iter().map(|e| e.widen()).sum::<f32>()
}
