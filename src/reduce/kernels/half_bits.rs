//! Max kernels for f16 and bf16 maps that never widen to f32: they compare the stored bits.
//!
//! Both formats are sign and magnitude, so read as signed 16-bit integers the non-negative
//! values sort like the floats they are, and the negative ones in reverse. The max of a set is
//! therefore its largest signed integer when that is non-negative, and otherwise (all values
//! negative) its smallest one, the negative value nearest zero. One register holds 16 (AVX2)
//! or 32 (AVX-512) halves against 8 or 16 f32 lanes, and integer max and min run on more
//! ports than a float max, so a half map is reduced at its own byte rate instead of at the rate
//! of the f32 values it would widen to.
//!
//! Finiteness is exact and costs one more operation per register: a positive infinity or NaN
//! is a signed integer at or above the format's infinity, a negative one an unsigned integer at
//! or above its negated infinity; the kernels track the unsigned max beside the two others.

use half::{bf16, f16};

use super::simd::f16_bits_to_f32;

/// The most lanes a register of [`Lanes16`] has (AVX-512).
const MAX_LANES: usize = 32;

/// A SIMD register of `L` 16-bit lanes and the integer operations the half kernels need.
///
/// # Safety
/// As for [`super::simd::Simd`]: implementations may only run where their instruction set is enabled,
/// and `load` reads `L` elements at `p`.
pub(super) trait Lanes16 {
    type I: Copy;
    const L: usize;
    unsafe fn splat16(x: u16) -> Self::I;
    unsafe fn load16(p: *const u16) -> Self::I;
    unsafe fn max_i16(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn min_i16(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn max_u16(a: Self::I, b: Self::I) -> Self::I;
    /// The largest lane as a signed integer.
    unsafe fn hmax_i16(v: Self::I) -> i16;
    /// The smallest lane as a signed integer.
    unsafe fn hmin_i16(v: Self::I) -> i16;
    /// The largest lane as an unsigned integer.
    unsafe fn hmax_u16(v: Self::I) -> u16;
    unsafe fn store16(p: *mut u16, v: Self::I);
}

/// A half-precision format: its infinity's bits and the exact widening of its bits.
pub(super) trait HalfBits: Copy {
    /// The bits of +infinity: every value with larger magnitude bits is a NaN.
    const INF: u16;
    fn to_f32(bits: u16) -> f32;
}

impl HalfBits for f16 {
    const INF: u16 = 0x7c00;
    #[inline(always)]
    fn to_f32(bits: u16) -> f32 {
        f16_bits_to_f32(bits)
    }
}

impl HalfBits for bf16 {
    const INF: u16 = 0x7f80;
    #[inline(always)]
    fn to_f32(bits: u16) -> f32 {
        f32::from_bits((bits as u32) << 16)
    }
}

/// The float a (signed max, signed min) pair of a set's bits stands for: see the module's note.
#[inline(always)]
fn max_of<H: HalfBits>(largest: i16, smallest: i16) -> f32 {
    H::to_f32(if largest >= 0 { largest as u16 } else { smallest as u16 })
}

/// Whether a set whose largest signed and unsigned bits these are holds only finite values.
#[inline(always)]
fn finite<H: HalfBits>(largest: i16, largest_unsigned: u16) -> bool {
    largest < H::INF as i16 && largest_unsigned < (0x8000 | H::INF)
}

/// `N` registers of signed max, of signed min and (with `CHECK`) of unsigned max.
struct Acc<V, const N: usize> {
    hi: [V; N],
    lo: [V; N],
    top: [V; N],
}

impl<V: Copy, const N: usize> Acc<V, N> {
    /// Empty accumulators: the signed max starts at `i16::MIN`, the others where they cannot win.
    #[inline(always)]
    unsafe fn new<S: Lanes16<I = V>>() -> Self {
        // SAFETY: register set-up only, where the caller enabled the ISA.
        unsafe { Acc { hi: [S::splat16(0x8000); N], lo: [S::splat16(0x7fff); N], top: [S::splat16(0); N] } }
    }

    #[inline(always)]
    unsafe fn step<S: Lanes16<I = V>, const CHECK: bool>(&mut self, p: *const u16) {
        for k in 0..N {
            // SAFETY: the caller checked that N × L elements are readable at `p`.
            unsafe {
                let x = S::load16(p.add(k * S::L));
                self.hi[k] = S::max_i16(x, self.hi[k]);
                self.lo[k] = S::min_i16(x, self.lo[k]);
                if CHECK {
                    self.top[k] = S::max_u16(x, self.top[k]);
                }
            }
        }
    }

    /// The N registers of each kind folded into one.
    #[inline(always)]
    unsafe fn fold<S: Lanes16<I = V>>(&self) -> (V, V, V) {
        let (mut hi, mut lo, mut top) = (self.hi[0], self.lo[0], self.top[0]);
        for k in 1..N {
            // SAFETY: register arithmetic only, where the caller enabled the ISA.
            unsafe {
                hi = S::max_i16(self.hi[k], hi);
                lo = S::min_i16(self.lo[k], lo);
                top = S::max_u16(self.top[k], top);
            }
        }
        (hi, lo, top)
    }
}

/// `acc[k] = max(acc[k], max(plane k))` over planes of `hw >= N × L` halves.
#[inline(always)]
unsafe fn planes_blocked<S: Lanes16, H: HalfBits, const N: usize, const CHECK: bool>(
    src: &[u16],
    hw: usize,
    acc: &mut [f32],
) -> bool {
    let block = N * S::L;
    debug_assert!(hw >= block && src.len() >= hw * acc.len());
    // SAFETY: every block read lies inside a plane: `hw >= block` and `src` holds `hw × acc.len()` elements (the caller asserts both).
    unsafe {
        let mut seen_hi = S::splat16(0x8000);
        let mut seen_top = S::splat16(0);
        for (c, a) in acc.iter_mut().enumerate() {
            let plane = src.as_ptr().add(c * hw);
            let mut m = Acc::<S::I, N>::new::<S>();
            let mut at = 0;
            while at + block <= hw {
                m.step::<S, CHECK>(plane.add(at));
                at += block;
            }
            if at < hw {
                // A last block ending at the end of the plane: maxima and minima do not mind
                // seeing a few elements twice.
                m.step::<S, CHECK>(plane.add(hw - block));
            }
            let (hi, lo, top) = m.fold::<S>();
            let x = max_of::<H>(S::hmax_i16(hi), S::hmin_i16(lo));
            *a = if x > *a { x } else { *a };
            if CHECK {
                seen_hi = S::max_i16(hi, seen_hi);
                seen_top = S::max_u16(top, seen_top);
            }
        }
        !CHECK || finite::<H>(S::hmax_i16(seen_hi), S::hmax_u16(seen_top))
    }
}

/// The plane kernel for halves: blocks of registers where planes are long enough, the
/// widening scalar loop where a plane is shorter than one register.
#[inline(always)]
pub(super) unsafe fn planes<S: Lanes16, H: HalfBits, const CHECK: bool>(src: &[H], hw: usize, acc: &mut [f32]) -> bool {
    assert!(src.len() >= hw * acc.len());
    // SAFETY: f16 and bf16 are 16-bit transparent wrappers of their bits.
    let bits = unsafe { std::slice::from_raw_parts(src.as_ptr() as *const u16, src.len()) };
    // SAFETY: each branch reads whole blocks inside planes of `hw` elements (asserted above).
    unsafe {
        if hw >= 4 * S::L {
            planes_blocked::<S, H, 4, CHECK>(bits, hw, acc)
        } else if hw >= 2 * S::L {
            planes_blocked::<S, H, 2, CHECK>(bits, hw, acc)
        } else if hw >= S::L {
            planes_blocked::<S, H, 1, CHECK>(bits, hw, acc)
        } else {
            scalar_planes::<H>(bits, hw, acc)
        }
    }
}

/// Running signed max and min of `N` registers of channels starting at `j`, over every row,
/// then folded into `acc` as floats.
#[inline(always)]
unsafe fn rows_block<S: Lanes16, H: HalfBits, const N: usize, const CHECK: bool>(
    src: &[u16],
    c: usize,
    j: usize,
    acc: &mut [f32],
    seen_top: &mut S::I,
) -> bool {
    const { assert!(S::L <= MAX_LANES) };
    debug_assert!(j + N * S::L <= c && src.len().is_multiple_of(c));
    // SAFETY: the N registers of channels `j..j + N × L` lie inside every row (`j + N × L <= c`), and `src` holds whole rows.
    unsafe {
        let mut m = Acc::<S::I, N>::new::<S>();
        let rows = src.len() / c;
        let base = src.as_ptr().add(j);
        for r in 0..rows {
            m.step::<S, CHECK>(base.add(r * c));
        }
        let mut hi = [0u16; MAX_LANES];
        let mut lo = [0u16; MAX_LANES];
        let mut finite_hi = true;
        for k in 0..N {
            S::store16(hi.as_mut_ptr(), m.hi[k]);
            S::store16(lo.as_mut_ptr(), m.lo[k]);
            for (l, a) in acc[j + k * S::L..j + (k + 1) * S::L].iter_mut().enumerate() {
                let x = max_of::<H>(hi[l] as i16, lo[l] as i16);
                *a = if x > *a { x } else { *a };
                finite_hi &= (hi[l] as i16) < H::INF as i16;
            }
            if CHECK {
                *seen_top = S::max_u16(m.top[k], *seen_top);
            }
        }
        finite_hi
    }
}

#[inline(always)]
unsafe fn rows_blocked<S: Lanes16, H: HalfBits, const N: usize, const CHECK: bool>(
    src: &[u16],
    acc: &mut [f32],
) -> bool {
    let c = acc.len();
    let block = N * S::L;
    // As for f32: several passes over the channels walk the rows in tiles of about 16 KiB.
    let tile_rows = if c > block { (16 << 10) / (c * 2) } else { usize::MAX };
    let tile = tile_rows.max(4).saturating_mul(c);
    let mut finite_hi = true;
    // SAFETY: every block starts at `j` or `c - block`, both with `block` channels inside a row.
    unsafe {
        let mut seen_top = S::splat16(0);
        for rows in src.chunks(tile) {
            let mut j = 0;
            while j + block <= c {
                finite_hi &= rows_block::<S, H, N, CHECK>(rows, c, j, acc, &mut seen_top);
                j += block;
            }
            if j < c {
                // Overlapping last block: channels already final are maxed with the same rows again.
                finite_hi &= rows_block::<S, H, N, CHECK>(rows, c, c - block, acc, &mut seen_top);
            }
        }
        !CHECK || finite::<H>(if finite_hi { 0 } else { i16::MAX }, S::hmax_u16(seen_top))
    }
}

/// The row (channels-last) kernel for halves.
#[inline(always)]
pub(super) unsafe fn rows<S: Lanes16, H: HalfBits, const CHECK: bool>(src: &[H], acc: &mut [f32]) -> bool {
    let c = acc.len();
    if c == 0 {
        return true;
    }
    assert_eq!(src.len() % c, 0);
    // SAFETY: f16 and bf16 are 16-bit transparent wrappers of their bits.
    let bits = unsafe { std::slice::from_raw_parts(src.as_ptr() as *const u16, src.len()) };
    // SAFETY: each branch reads whole blocks inside rows of `c` elements (asserted above).
    unsafe {
        if c >= 4 * S::L {
            rows_blocked::<S, H, 4, CHECK>(bits, acc)
        } else if c >= 2 * S::L {
            rows_blocked::<S, H, 2, CHECK>(bits, acc)
        } else if c >= S::L {
            rows_blocked::<S, H, 1, CHECK>(bits, acc)
        } else {
            scalar_rows::<H>(bits, acc)
        }
    }
}

/// Planes shorter than a register, one element at a time on the same bits (checked exactly).
fn scalar_planes<H: HalfBits>(src: &[u16], hw: usize, acc: &mut [f32]) -> bool {
    if hw == 0 {
        return true;
    }
    let (mut seen_hi, mut seen_top) = (i16::MIN, 0u16);
    for (a, plane) in acc.iter_mut().zip(src.chunks_exact(hw)) {
        let (hi, lo) = plane.iter().fold((i16::MIN, i16::MAX), |(hi, lo), &b| (hi.max(b as i16), lo.min(b as i16)));
        let x = max_of::<H>(hi, lo);
        *a = if x > *a { x } else { *a };
        seen_hi = seen_hi.max(hi);
        seen_top = plane.iter().fold(seen_top, |t, &b| t.max(b));
    }
    finite::<H>(seen_hi, seen_top)
}

/// Rows of fewer channels than a register has lanes, one element at a time (checked exactly).
fn scalar_rows<H: HalfBits>(src: &[u16], acc: &mut [f32]) -> bool {
    let c = acc.len();
    let mut hi = [i16::MIN; MAX_LANES];
    let mut lo = [i16::MAX; MAX_LANES];
    let mut seen_top = 0u16;
    assert!(c <= MAX_LANES);
    for row in src.chunks_exact(c) {
        for (k, &b) in row.iter().enumerate() {
            hi[k] = hi[k].max(b as i16);
            lo[k] = lo[k].min(b as i16);
            seen_top = seen_top.max(b);
        }
    }
    let mut seen_hi = i16::MIN;
    for (k, a) in acc.iter_mut().enumerate() {
        let x = max_of::<H>(hi[k], lo[k]);
        *a = if x > *a { x } else { *a };
        seen_hi = seen_hi.max(hi[k]);
    }
    finite::<H>(seen_hi, seen_top)
}
