//! The max and copy kernels, written once over a small [`Simd`] trait and compiled per
//! instruction set (one file each), each inside `#[target_feature]` functions.
//!
//! The library ships as one binary, so the kernels are written once, generically over a small
//! [`Simd`] trait, and instantiated inside `#[target_feature]` functions for the x86-64
//! baseline (SSE2), AVX2 + F16C and AVX-512F/BW + F16C; the best set the CPU supports is chosen
//! on first use. (Auto-vectorisation of the same loops proved fragile: LLVM sometimes
//! vectorised them across the wrong axis at a third of the speed.) Other targets get a
//! portable version. Where the ISA has 16-bit integer max and min (AVX2, AVX-512BW), f16 and
//! bf16 maps are reduced on their bits (`half_bits.rs`, exact finiteness); elsewhere, and in
//! the copies, they are widened in registers (bf16 by a shift, f16 by F16C or integer
//! arithmetic). Either way a map is read once. The CNN path's channels-last transpose is in
//! `transpose.rs`.
//!
//! Every kernel that widens (every f32 one) also sums what it reads, lane by lane, over the
//! whole call. The sum is finite exactly when every input was finite (unless it overflows,
//! which needs values beyond ~1e33):
//! a non-finite sum only makes the caller re-scan that sample exactly, so the common path pays
//! one add per register, on another port than the max.

use std::mem::MaybeUninit;

use half::{bf16, f16};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod half_bits;
#[cfg(not(target_arch = "x86_64"))]
mod portable;
#[cfg(target_arch = "x86_64")]
mod sse2;
mod sums;
#[cfg(test)]
mod tests;
mod transpose;

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::AVX2;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::AVX512;
#[cfg(not(target_arch = "x86_64"))]
pub(crate) use portable::BASELINE;
#[cfg(target_arch = "x86_64")]
pub(crate) use sse2::BASELINE;
pub(crate) use transpose::TransposeFn;

/// A SIMD register of `W` f32 lanes and the few operations the kernels need.
///
/// # Safety
/// Implementations use intrinsics of one instruction set: they may only run inside functions
/// compiled with (and CPUs having) that instruction set. Loads read `W` elements at `p`.
trait Simd {
    type V: Copy;
    const W: usize;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load_f32(p: *const f32) -> Self::V;
    unsafe fn load_bf16(p: *const u16) -> Self::V;
    unsafe fn load_f16(p: *const u16) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Lane-wise max; where `x` is NaN the result is `m`'s lane.
    unsafe fn max(x: Self::V, m: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn hmax(v: Self::V) -> f32 {
        let mut lanes = [0f32; 16];
        // SAFETY: `lanes` holds 16 >= W writable f32; the caller runs where the ISA is enabled.
        unsafe { Self::store(lanes.as_mut_ptr(), v) };
        lanes[..Self::W].iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
    }
    /// The horizontal max of each of four registers (ISAs override it with one shuffle tree).
    unsafe fn hmax4(m: [Self::V; 4]) -> [f32; 4] {
        // SAFETY: as in `hmax`.
        unsafe { [Self::hmax(m[0]), Self::hmax(m[1]), Self::hmax(m[2]), Self::hmax(m[3])] }
    }
    unsafe fn hsum(v: Self::V) -> f32 {
        let mut lanes = [0f32; 16];
        // SAFETY: as in `hmax`.
        unsafe { Self::store(lanes.as_mut_ptr(), v) };
        lanes[..Self::W].iter().sum()
    }
}

/// A stored element type: how `W` of them become a register, and one of them an f32.
trait Elem: Copy {
    unsafe fn load<S: Simd>(p: *const Self) -> S::V;
    fn widen(self) -> f32;
}

impl Elem for f32 {
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const f32) -> S::V {
        // SAFETY: forwarded from the caller: W elements readable at `p`.
        unsafe { S::load_f32(p) }
    }
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
}

impl Elem for bf16 {
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const bf16) -> S::V {
        // SAFETY: forwarded from the caller; bf16 and u16 have the same size and alignment.
        unsafe { S::load_bf16(p as *const u16) }
    }
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
}

impl Elem for f16 {
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const f16) -> S::V {
        // SAFETY: forwarded from the caller; f16 and u16 have the same size and alignment.
        unsafe { S::load_f16(p as *const u16) }
    }
    #[inline(always)]
    fn widen(self) -> f32 {
        f16_bits_to_f32(self.to_bits())
    }
}

/// IEEE binary16 to f32 with integer operations only (exact for every value).
#[inline(always)]
fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let bits = (h & 0x7fff) << 13;
    let exp = bits & 0x0f80_0000;
    let v = if exp == 0x0f80_0000 {
        f32::from_bits(bits + (224 << 23)) // infinity and NaN
    } else if exp == 0 {
        f32::from_bits(bits + (113 << 23)) - f32::from_bits(113 << 23) // zero and subnormals
    } else {
        f32::from_bits(bits + (112 << 23))
    };
    f32::from_bits(v.to_bits() | sign)
}

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
unsafe fn planes<S: Simd, E: Elem, const CHECK: bool>(src: &[E], hw: usize, acc: &mut [f32]) -> bool {
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
unsafe fn rows<S: Simd, E: Elem, const CHECK: bool>(src: &[E], acc: &mut [f32]) -> bool {
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
unsafe fn copy<S: Simd, E: Elem>(src: &[E], dst: &mut [MaybeUninit<f32>]) -> bool {
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

/// The kernels that widen every element to f32 in registers (all of f32's, and f16's and
/// bf16's where the ISA lacks 16-bit integer max and min), under the names the half-bits
/// kernels (`half_bits`) have, so that `kernel_set!` can take either.
mod widened {
    pub(super) use super::{planes, rows};
}

/// Wraps the generic kernels for one ISA into safe functions with `#[target_feature]`.
/// `$halves` names the module of the f16 and bf16 kernels: `widened` (any ISA) or `half_bits`
/// (the ISA has 16-bit integer max and min, see `half_bits.rs`); `$transposes` the module of
/// `transpose.rs` whose channels-last transposes this ISA's table carries.
macro_rules! kernel_set {
    ($name:ident, $isa:expr, $simd:ty, $features:literal, $halves:ident, $transposes:ident) => {
        #[allow(non_snake_case)]
        mod kernels {
            use super::*;
            use std::mem::MaybeUninit;

            use $crate::reduce::kernels::copy;
            use $crate::reduce::kernels::sums::{sum_rows, sum_run};

            // `$module`: `widened` or `half_bits`, whose `planes` and `rows` have one signature.
            macro_rules! planes_fn {
                ($fname:ident, $elem:ty, $module:ident) => {
                    fn $fname(src: &[$elem], hw: usize, acc: &mut [f32], check: bool) -> bool {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem], hw: usize, acc: &mut [f32], check: bool) -> bool {
                            use $crate::reduce::kernels::$module::planes;
                            // SAFETY: this function runs with the features it was compiled for, which `inner`'s callee needs.
                            unsafe {
                                if check {
                                    planes::<$simd, $elem, true>(src, hw, acc)
                                } else {
                                    planes::<$simd, $elem, false>(src, hw, acc)
                                }
                            }
                        }
                        // SAFETY: `Kernels::for_isa` hands these kernels out only after
                        // `Isa::is_available` confirmed every feature they were compiled for
                        // (the tuned table of `Kernels::best` takes its kernels from there).
                        unsafe { inner(src, hw, acc, check) }
                    }
                };
            }
            macro_rules! rows_fn {
                ($fname:ident, $elem:ty, $module:ident) => {
                    fn $fname(src: &[$elem], acc: &mut [f32], check: bool) -> bool {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem], acc: &mut [f32], check: bool) -> bool {
                            use $crate::reduce::kernels::$module::rows;
                            // SAFETY: as for `planes_fn`.
                            unsafe {
                                if check {
                                    rows::<$simd, $elem, true>(src, acc)
                                } else {
                                    rows::<$simd, $elem, false>(src, acc)
                                }
                            }
                        }
                        // SAFETY: as for `planes_fn`.
                        unsafe { inner(src, acc, check) }
                    }
                };
            }
            macro_rules! copy_fn {
                ($fname:ident, $elem:ty) => {
                    fn $fname(src: &[$elem], dst: &mut [MaybeUninit<f32>]) -> bool {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem], dst: &mut [MaybeUninit<f32>]) -> bool {
                            // SAFETY: as for `planes_fn`.
                            unsafe { copy::<$simd, $elem>(src, dst) }
                        }
                        // SAFETY: as for `planes_fn`.
                        unsafe { inner(src, dst) }
                    }
                };
            }
            macro_rules! sum_fns {
                ($rows:ident, $run:ident, $elem:ty) => {
                    fn $rows(src: &[$elem], acc: &mut [f32]) {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem], acc: &mut [f32]) {
                            // SAFETY: as for `planes_fn`.
                            unsafe { sum_rows::<$simd, $elem>(src, acc) }
                        }
                        // SAFETY: as for `planes_fn`.
                        unsafe { inner(src, acc) }
                    }
                    fn $run(src: &[$elem]) -> f32 {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem]) -> f32 {
                            // SAFETY: as for `planes_fn`.
                            unsafe { sum_run::<$simd, $elem>(src) }
                        }
                        // SAFETY: as for `planes_fn`.
                        unsafe { inner(src) }
                    }
                };
            }
            sum_fns!(sum_rows_f32, sum_run_f32, f32);
            sum_fns!(sum_rows_f16, sum_run_f16, f16);
            sum_fns!(sum_rows_bf16, sum_run_bf16, bf16);
            copy_fn!(copy_f32, f32);
            copy_fn!(copy_f16, f16);
            copy_fn!(copy_bf16, bf16);
            planes_fn!(planes_f32, f32, widened);
            rows_fn!(rows_f32, f32, widened);
            planes_fn!(planes_bf16, bf16, $halves);
            rows_fn!(rows_bf16, bf16, $halves);
            planes_fn!(planes_f16, f16, $halves);
            rows_fn!(rows_f16, f16, $halves);

            pub(crate) const KERNELS: Kernels = Kernels {
                isa: $isa,
                copy_f32,
                copy_f16,
                copy_bf16,
                planes_f32,
                rows_f32,
                planes_bf16,
                rows_bf16,
                planes_f16,
                rows_f16,
                sum_rows_f32,
                sum_rows_f16,
                sum_rows_bf16,
                sum_run_f32,
                sum_run_f16,
                sum_run_bf16,
                transpose_f32: $crate::reduce::kernels::transpose::$transposes::f32,
                transpose_f16: $crate::reduce::kernels::transpose::$transposes::f16,
                transpose_bf16: $crate::reduce::kernels::transpose::$transposes::bf16,
            };
        }
        /// This instruction set's kernels.
        pub(crate) const $name: Kernels = kernels::KERNELS;
    };
}
pub(crate) use kernel_set;
