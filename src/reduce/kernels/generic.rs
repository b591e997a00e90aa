//! The max, copy and sum-check kernels, written once over [`Simd`] and [`Elem`]; `set.rs`
//! instantiates them per instruction set inside `#[target_feature]` functions.

use std::mem::MaybeUninit;

use super::simd::{Elem, Simd};

/// Max of the `N × W` elements at `p` into `m`; registers `k` and `k + H` are summed together
/// into check register `k` (added first, so the sums form no long chain).
#[inline(always)]
unsafe fn step<S: Simd, E: Elem, const N: usize, const H: usize, const CHECK: bool>(
    p: *const E,
    m: &mut [S::V; N],
    s: &mut [S::V; H],
) {
    const { assert!(2 * H == N || (N == 1 && H == 1)) };
    if N == 1 {
        // SAFETY: the caller checked that W elements are readable at `p`.
        let x = unsafe { E::load::<S>(p) };
        // SAFETY: register arithmetic only, where the caller enabled the ISA.
        unsafe {
            m[0] = S::max(x, m[0]);
            if CHECK {
                s[0] = S::add(s[0], x);
            }
        }
        return;
    }
    for k in 0..H {
        // SAFETY: the caller checked that N × W elements are readable at `p`.
        unsafe {
            let lo = E::load::<S>(p.add(k * S::W));
            let hi = E::load::<S>(p.add((k + H) * S::W));
            m[k] = S::max(lo, m[k]);
            m[k + H] = S::max(hi, m[k + H]);
            if CHECK {
                s[k] = S::add(s[k], S::add(lo, hi));
            }
        }
    }
}

/// Planes of at least `N × W` elements, `N` registers at a time.
#[inline(always)]
unsafe fn planes_blocked<S: Simd, E: Elem, const N: usize, const H: usize, const CHECK: bool>(
    src: &[E],
    hw: usize,
    acc: &mut [f32],
) -> bool {
    let block = N * S::W;
    debug_assert!(hw >= block && src.len() >= hw * acc.len());
    // SAFETY: every block read lies inside a plane: `hw >= block` and `src` holds `hw × acc.len()` elements (the caller asserts both).
    unsafe {
        let mut s = [S::splat(0.0); H];
        for (c, a) in acc.iter_mut().enumerate() {
            let plane = src.as_ptr().add(c * hw);
            let mut m = [S::splat(f32::NEG_INFINITY); N];
            let mut at = 0;
            while at + block <= hw {
                step::<S, E, N, H, CHECK>(plane.add(at), &mut m, &mut s);
                at += block;
            }
            if at < hw {
                // A last block ending at the end of the plane: re-reading a few elements cannot
                // change a max (it only double-counts in the check sum), and spares a tail loop.
                step::<S, E, N, H, CHECK>(plane.add(hw - block), &mut m, &mut s);
            }
            let mut v = m[0];
            for mk in &m[1..] {
                v = S::max(*mk, v);
            }
            let mx = S::hmax(v);
            *a = if mx > *a { mx } else { *a };
        }
        let mut t = s[0];
        for sk in &s[1..] {
            t = S::add(t, *sk);
        }
        S::hsum(t).is_finite()
    }
}

#[inline(always)]
pub(super) unsafe fn planes<S: Simd, E: Elem, const CHECK: bool>(src: &[E], hw: usize, acc: &mut [f32]) -> bool {
    assert!(src.len() >= hw * acc.len());
    // SAFETY: each branch reads whole blocks inside planes of `hw` elements (asserted above).
    unsafe {
        if hw >= 32 * S::W {
            planes_blocked::<S, E, 8, 4, CHECK>(src, hw, acc)
        } else if hw >= 8 * S::W {
            planes_blocked::<S, E, 4, 2, CHECK>(src, hw, acc)
        } else if hw >= 4 * S::W {
            planes_blocked::<S, E, 2, 1, CHECK>(src, hw, acc)
        } else if hw >= S::W {
            planes_by_four::<S, E, CHECK>(src, hw, acc)
        } else {
            scalar_planes(src, hw, acc)
        }
    }
}

/// Planes of `W` to `4 × W` elements (the small late taps: 7 × 7, 4 × 4), four at a time. One
/// plane at a time, a plane this small is a few dependent steps on one register and then a
/// horizontal max as long as its scan; four planes side by side give four independent chains
/// and one `hmax4` for the four.
#[inline(always)]
unsafe fn planes_by_four<S: Simd, E: Elem, const CHECK: bool>(src: &[E], hw: usize, acc: &mut [f32]) -> bool {
    debug_assert!(hw >= S::W && src.len() >= hw * acc.len());
    let grouped = acc.len() / 4 * 4;
    // SAFETY: every load reads `W` elements starting at most `hw - W` into a plane of `hw >= W`
    // elements, inside `src`, which holds `hw × acc.len()` of them (the caller asserts it).
    unsafe {
        let mut s = [S::splat(0.0); 4];
        for (g, out) in acc[..grouped].chunks_exact_mut(4).enumerate() {
            let first = src.as_ptr().add(g * 4 * hw);
            let mut m = [S::splat(f32::NEG_INFINITY); 4];
            let mut at = 0;
            loop {
                // The last block ends at the end of the plane, as in `planes_blocked`.
                let from = if at + S::W <= hw { at } else { hw - S::W };
                for (k, (mk, sk)) in m.iter_mut().zip(&mut s).enumerate() {
                    let x = E::load::<S>(first.add(k * hw + from));
                    *mk = S::max(x, *mk);
                    if CHECK {
                        *sk = S::add(*sk, x);
                    }
                }
                at += S::W;
                if at >= hw {
                    break;
                }
            }
            for (a, mx) in out.iter_mut().zip(S::hmax4(m)) {
                *a = if mx > *a { mx } else { *a };
            }
        }
        let rest = planes_blocked::<S, E, 1, 1, CHECK>(&src[grouped * hw..], hw, &mut acc[grouped..]);
        let t = S::add(S::add(s[0], s[1]), S::add(s[2], s[3]));
        rest & S::hsum(t).is_finite()
    }
}

fn scalar_planes<E: Elem>(src: &[E], hw: usize, acc: &mut [f32]) -> bool {
    let mut s = 0f32;
    if hw == 0 {
        return true;
    }
    for (a, plane) in acc.iter_mut().zip(src.chunks_exact(hw)) {
        for x in plane.iter().map(|e| e.widen()) {
            *a = if x > *a { x } else { *a };
            s += x;
        }
    }
    s.is_finite()
}

/// Running max of `N` registers of channels starting at `j`, over every row. Registers `k` and
/// `k + N/2` share a check register (added together first, so the sums form no long chain),
/// which leaves the other registers for the maxima.
#[inline(always)]
unsafe fn rows_block<S: Simd, E: Elem, const N: usize, const H: usize, const CHECK: bool>(
    src: &[E],
    c: usize,
    j: usize,
    acc: &mut [f32],
    s: &mut [S::V; H],
) {
    const { assert!(2 * H == N) };
    debug_assert!(j + N * S::W <= c && src.len().is_multiple_of(c));
    // SAFETY: the N registers of channels `j..j + N × W` lie inside every row (`j + N × W <= c`), and `src` holds whole rows.
    unsafe {
        let mut m = [S::splat(0.0); N];
        for (k, mk) in m.iter_mut().enumerate() {
            *mk = S::load_f32(acc.as_ptr().add(j + k * S::W));
        }
        let rows = src.len() / c;
        let base = src.as_ptr().add(j);
        for r in 0..rows {
            let row = base.add(r * c);
            for k in 0..H {
                let lo = E::load::<S>(row.add(k * S::W));
                let hi = E::load::<S>(row.add((k + H) * S::W));
                m[k] = S::max(lo, m[k]);
                m[k + H] = S::max(hi, m[k + H]);
                if CHECK {
                    s[k] = S::add(s[k], S::add(lo, hi));
                }
            }
        }
        for (k, mk) in m.iter().enumerate() {
            S::store(acc.as_mut_ptr().add(j + k * S::W), *mk);
        }
    }
}

#[inline(always)]
unsafe fn rows_blocked<S: Simd, E: Elem, const N: usize, const H: usize, const CHECK: bool>(
    src: &[E],
    acc: &mut [f32],
) -> bool {
    let c = acc.len();
    let block = N * S::W;
    // When the channels need several passes, walk the rows in tiles of about 16 KiB, so that
    // the passes after the first read the tile from L1 instead of memory.
    let tile_rows = if c > block { (16 << 10) / (c * std::mem::size_of::<E>()) } else { usize::MAX };
    let tile = tile_rows.max(4).saturating_mul(c);
    // SAFETY: every block starts at `j` or `c - block`, both with `block` channels inside a row.
    unsafe {
        let mut s = [S::splat(0.0); H];
        for rows in src.chunks(tile) {
            let mut j = 0;
            while j + block <= c {
                rows_block::<S, E, N, H, CHECK>(rows, c, j, acc, &mut s);
                j += block;
            }
            if j < c {
                // Overlapping last block: channels already final are maxed with the same rows again.
                rows_block::<S, E, N, H, CHECK>(rows, c, c - block, acc, &mut s);
            }
        }
        let mut t = s[0];
        for sk in &s[1..] {
            t = S::add(t, *sk);
        }
        S::hsum(t).is_finite()
    }
}

#[inline(always)]
pub(super) unsafe fn rows<S: Simd, E: Elem, const CHECK: bool>(src: &[E], acc: &mut [f32]) -> bool {
    let c = acc.len();
    if c == 0 {
        return true;
    }
    assert_eq!(src.len() % c, 0);
    // SAFETY: each branch reads whole blocks inside rows of `c` elements (asserted above).
    unsafe {
        if c >= 8 * S::W {
            rows_blocked::<S, E, 8, 4, CHECK>(src, acc)
        } else if c >= 4 * S::W {
            rows_blocked::<S, E, 4, 2, CHECK>(src, acc)
        } else if c >= 2 * S::W {
            rows_blocked::<S, E, 2, 1, CHECK>(src, acc)
        } else {
            scalar_rows(src, acc)
        }
    }
}

/// Copies `src` into `dst` as f32 (widening halves in registers), four registers at a time,
/// and returns the finiteness hint of the max kernels (a sum of what was read).
#[inline(always)]
pub(super) unsafe fn copy<S: Simd, E: Elem>(src: &[E], dst: &mut [MaybeUninit<f32>]) -> bool {
    assert_eq!(src.len(), dst.len());
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr() as *mut f32);
    let block = 4 * S::W;
    let full = src.len() / block * block;
    // SAFETY: `block` elements readable at `s + i` and writable at `d + i` (i + block <= len).
    unsafe {
        let mut sums = [S::splat(0.0); 2];
        let mut i = 0;
        while i < full {
            let r = [0, 1, 2, 3].map(|k| E::load::<S>(s.add(i + k * S::W)));
            for (k, rk) in r.iter().enumerate() {
                S::store(d.add(i + k * S::W), *rk);
            }
            sums[0] = S::add(sums[0], S::add(r[0], r[1]));
            sums[1] = S::add(sums[1], S::add(r[2], r[3]));
            i += block;
        }
        let mut tail = 0f32;
        for (o, e) in dst[full..].iter_mut().zip(&src[full..]) {
            let x = e.widen();
            o.write(x);
            tail += x;
        }
        S::hsum(S::add(sums[0], sums[1])).is_finite() && tail.is_finite()
    }
}

fn scalar_rows<E: Elem>(src: &[E], acc: &mut [f32]) -> bool {
    let mut s = 0f32;
    for row in src.chunks_exact(acc.len()) {
        for (a, x) in acc.iter_mut().zip(row.iter().map(|e| e.widen())) {
            *a = if x > *a { x } else { *a };
            s += x;
        }
    }
    s.is_finite()
}
