//! Max kernels over explicit SIMD registers, compiled per instruction set, picked at run time.
//!
//! The library ships as one binary, so the kernels are written once, generically over a small
//! [`Simd`] trait, and instantiated inside `#[target_feature]` functions for the x86-64
//! baseline (SSE2), AVX2 + F16C and AVX-512F + F16C; the best set the CPU supports is chosen
//! on first use. (Auto-vectorisation of the same loops proved fragile: LLVM sometimes
//! vectorised them across the wrong axis at a third of the speed.) Other targets get a
//! portable version. Half-precision elements are widened in registers (bf16 by a shift, f16
//! by F16C or integer arithmetic), so f16 and bf16 maps are read once, like f32.
//!
//! Every kernel also sums what it reads, lane by lane, over the whole call. The sum is finite
//! exactly when every input was finite (unless it overflows, which needs values beyond ~1e33):
//! a non-finite sum only makes the caller re-scan that sample exactly, so the common path pays
//! one add per register, on another port than the max.

use half::{bf16, f16};

/// `acc[k] = max(acc[k], max(plane k))` over planes of `hw` elements. With `check`, returns
/// `false` when the values read may include NaN or infinities (without, always `true`).
pub(crate) type PlanesFn<T> = fn(src: &[T], hw: usize, acc: &mut [f32], check: bool) -> bool;
/// `acc[j] = max(acc[j], src[r * c + j])` over every row `r` of `c = acc.len()` channels.
/// With `check`, returns `false` when the values read may include NaN or infinities.
pub(crate) type RowsFn<T> = fn(src: &[T], acc: &mut [f32], check: bool) -> bool;

/// An instruction set the kernels were compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// The target's baseline (SSE2 on x86-64; portable code elsewhere).
    Baseline,
    /// AVX2 with F16C.
    Avx2,
    /// AVX-512F with F16C.
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
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("f16c")
            }
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

/// Widens half-precision values into `dst` (same length).
pub(crate) type WidenFn<T> = fn(src: &[T], dst: &mut [f32]);

/// The kernels of one instruction set, for each element type.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub isa: Isa,
    pub widen_f16: WidenFn<f16>,
    pub widen_bf16: WidenFn<bf16>,
    pub planes_f32: PlanesFn<f32>,
    pub rows_f32: RowsFn<f32>,
    pub planes_bf16: PlanesFn<bf16>,
    pub rows_bf16: RowsFn<bf16>,
    pub planes_f16: PlanesFn<f16>,
    pub rows_f16: RowsFn<f16>,
}

impl Kernels {
    /// The kernels for `isa`, or `None` where this CPU lacks it.
    pub(crate) fn for_isa(isa: Isa) -> Option<Kernels> {
        if !isa.is_available() {
            return None;
        }
        Some(match isa {
            Isa::Baseline => baseline::KERNELS,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::KERNELS,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::KERNELS,
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
        unsafe { Self::store(lanes.as_mut_ptr(), v) };
        lanes[..Self::W].iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
    }
    unsafe fn hsum(v: Self::V) -> f32 {
        let mut lanes = [0f32; 16];
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
            planes_blocked::<S, E, 1, 1, CHECK>(src, hw, acc)
        } else {
            scalar_planes(src, hw, acc)
        }
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

#[inline(always)]
unsafe fn widen<S: Simd, E: Elem>(src: &[E], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    let full = src.len() / S::W * S::W;
    let mut i = 0;
    while i < full {
        // SAFETY: `W` elements readable at `src[i]`, writable at `dst[i]` (i + W <= len).
        unsafe { S::store(dst.as_mut_ptr().add(i), E::load::<S>(src.as_ptr().add(i))) };
        i += S::W;
    }
    for (d, e) in dst[full..].iter_mut().zip(&src[full..]) {
        *d = e.widen();
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

/// Wraps the generic kernels for one ISA into safe functions with `#[target_feature]`.
macro_rules! kernel_set {
    ($name:ident, $isa:expr, $simd:ty, $features:literal) => {
        mod $name {
            use super::*;

            macro_rules! planes_fn {
                ($fname:ident, $elem:ty) => {
                    fn $fname(src: &[$elem], hw: usize, acc: &mut [f32], check: bool) -> bool {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem], hw: usize, acc: &mut [f32], check: bool) -> bool {
                            unsafe {
                                if check {
                                    planes::<$simd, $elem, true>(src, hw, acc)
                                } else {
                                    planes::<$simd, $elem, false>(src, hw, acc)
                                }
                            }
                        }
                        // SAFETY: `Kernels::for_isa` hands these kernels out only after
                        // `Isa::is_available` confirmed every feature they were compiled for.
                        unsafe { inner(src, hw, acc, check) }
                    }
                };
            }
            macro_rules! rows_fn {
                ($fname:ident, $elem:ty) => {
                    fn $fname(src: &[$elem], acc: &mut [f32], check: bool) -> bool {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem], acc: &mut [f32], check: bool) -> bool {
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
            macro_rules! widen_fn {
                ($fname:ident, $elem:ty) => {
                    fn $fname(src: &[$elem], dst: &mut [f32]) {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem], dst: &mut [f32]) {
                            unsafe { widen::<$simd, $elem>(src, dst) }
                        }
                        // SAFETY: as for `planes_fn`.
                        unsafe { inner(src, dst) }
                    }
                };
            }
            widen_fn!(widen_f16, f16);
            widen_fn!(widen_bf16, bf16);
            planes_fn!(planes_f32, f32);
            rows_fn!(rows_f32, f32);
            planes_fn!(planes_bf16, bf16);
            rows_fn!(rows_bf16, bf16);
            planes_fn!(planes_f16, f16);
            rows_fn!(rows_f16, f16);

            pub(super) const KERNELS: Kernels = Kernels {
                isa: $isa,
                widen_f16,
                widen_bf16,
                planes_f32,
                rows_f32,
                planes_bf16,
                rows_bf16,
                planes_f16,
                rows_f16,
            };
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{f16_bits_to_f32, Simd};

    pub struct Sse;
    impl Simd for Sse {
        type V = __m128;
        const W: usize = 4;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m128 {
            _mm_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load_f32(p: *const f32) -> __m128 {
            unsafe { _mm_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_bf16(p: *const u16) -> __m128 {
            unsafe {
                let h = _mm_loadl_epi64(p as *const __m128i);
                _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), h))
            }
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const u16) -> __m128 {
            let h = unsafe { std::slice::from_raw_parts(p, 4) };
            _mm_setr_ps(f16_bits_to_f32(h[0]), f16_bits_to_f32(h[1]), f16_bits_to_f32(h[2]), f16_bits_to_f32(h[3]))
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m128) {
            unsafe { _mm_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn max(x: __m128, m: __m128) -> __m128 {
            _mm_max_ps(x, m)
        }
        #[inline(always)]
        unsafe fn add(a: __m128, b: __m128) -> __m128 {
            _mm_add_ps(a, b)
        }
    }

    pub struct Avx2;
    impl Simd for Avx2 {
        type V = __m256;
        const W: usize = 8;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load_f32(p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_bf16(p: *const u16) -> __m256 {
            unsafe {
                let h = _mm_loadu_si128(p as *const __m128i);
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            }
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const u16) -> __m256 {
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn max(x: __m256, m: __m256) -> __m256 {
            _mm256_max_ps(x, m)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn hmax(v: __m256) -> f32 {
            let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
            _mm_cvtss_f32(m)
        }
    }

    pub struct Avx512;
    impl Simd for Avx512 {
        type V = __m512;
        const W: usize = 16;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load_f32(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_bf16(p: *const u16) -> __m512 {
            unsafe {
                let h = _mm256_loadu_si256(p as *const __m256i);
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
            }
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const u16) -> __m512 {
            unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn max(x: __m512, m: __m512) -> __m512 {
            _mm512_max_ps(x, m)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn hmax(v: __m512) -> f32 {
            _mm512_reduce_max_ps(v)
        }
    }
}

#[cfg(target_arch = "x86_64")]
kernel_set!(baseline, Isa::Baseline, x86::Sse, "sse2");
#[cfg(target_arch = "x86_64")]
kernel_set!(avx2, Isa::Avx2, x86::Avx2, "avx2,f16c");
#[cfg(target_arch = "x86_64")]
kernel_set!(avx512, Isa::Avx512, x86::Avx512, "avx512f,f16c");

/// Elsewhere: plain arrays, which the compiler maps onto the target's vectors as it can.
#[cfg(not(target_arch = "x86_64"))]
mod portable {
    use super::{f16_bits_to_f32, Simd};

    pub struct Lanes;
    impl Simd for Lanes {
        type V = [f32; 4];
        const W: usize = 4;
        unsafe fn splat(x: f32) -> [f32; 4] {
            [x; 4]
        }
        unsafe fn load_f32(p: *const f32) -> [f32; 4] {
            unsafe { std::ptr::read_unaligned(p as *const [f32; 4]) }
        }
        unsafe fn load_bf16(p: *const u16) -> [f32; 4] {
            let h = unsafe { std::ptr::read_unaligned(p as *const [u16; 4]) };
            h.map(|b| f32::from_bits((b as u32) << 16))
        }
        unsafe fn load_f16(p: *const u16) -> [f32; 4] {
            let h = unsafe { std::ptr::read_unaligned(p as *const [u16; 4]) };
            h.map(f16_bits_to_f32)
        }
        unsafe fn store(p: *mut f32, v: [f32; 4]) {
            unsafe { std::ptr::write_unaligned(p as *mut [f32; 4], v) }
        }
        unsafe fn max(x: [f32; 4], m: [f32; 4]) -> [f32; 4] {
            std::array::from_fn(|i| if x[i] > m[i] { x[i] } else { m[i] })
        }
        unsafe fn add(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
            std::array::from_fn(|i| a[i] + b[i])
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod baseline {
    use super::*;
    fn planes_f32(s: &[f32], hw: usize, a: &mut [f32], check: bool) -> bool {
        unsafe {
            if check {
                planes::<portable::Lanes, f32, true>(s, hw, a)
            } else {
                planes::<portable::Lanes, f32, false>(s, hw, a)
            }
        }
    }
    fn rows_f32(s: &[f32], a: &mut [f32], check: bool) -> bool {
        unsafe {
            if check {
                rows::<portable::Lanes, f32, true>(s, a)
            } else {
                rows::<portable::Lanes, f32, false>(s, a)
            }
        }
    }
    fn planes_bf16(s: &[bf16], hw: usize, a: &mut [f32], check: bool) -> bool {
        unsafe {
            if check {
                planes::<portable::Lanes, bf16, true>(s, hw, a)
            } else {
                planes::<portable::Lanes, bf16, false>(s, hw, a)
            }
        }
    }
    fn rows_bf16(s: &[bf16], a: &mut [f32], check: bool) -> bool {
        unsafe {
            if check {
                rows::<portable::Lanes, bf16, true>(s, a)
            } else {
                rows::<portable::Lanes, bf16, false>(s, a)
            }
        }
    }
    fn planes_f16(s: &[f16], hw: usize, a: &mut [f32], check: bool) -> bool {
        unsafe {
            if check {
                planes::<portable::Lanes, f16, true>(s, hw, a)
            } else {
                planes::<portable::Lanes, f16, false>(s, hw, a)
            }
        }
    }
    fn rows_f16(s: &[f16], a: &mut [f32], check: bool) -> bool {
        unsafe {
            if check {
                rows::<portable::Lanes, f16, true>(s, a)
            } else {
                rows::<portable::Lanes, f16, false>(s, a)
            }
        }
    }
    fn widen_f16(s: &[f16], d: &mut [f32]) {
        unsafe { widen::<portable::Lanes, f16>(s, d) }
    }
    fn widen_bf16(s: &[bf16], d: &mut [f32]) {
        unsafe { widen::<portable::Lanes, bf16>(s, d) }
    }
    pub(super) const KERNELS: Kernels = Kernels {
        isa: Isa::Baseline,
        widen_f16,
        widen_bf16,
        planes_f32,
        rows_f32,
        planes_bf16,
        rows_bf16,
        planes_f16,
        rows_f16,
    };
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

    const SIZES: [(usize, usize); 12] = [
        (1, 1),
        (3, 5),
        (7, 8),
        (5, 9),
        (64, 49),
        (13, 31),
        (9, 33),
        (4, 3136),
        (70, 17),
        (130, 70),
        (3, 300),
        (200, 3),
    ];

    fn transpose(src: &[f32], c: usize, hw: usize) -> Vec<f32> {
        let mut rows = vec![0f32; c * hw];
        for ch in 0..c {
            for p in 0..hw {
                rows[p * c + ch] = src[ch * hw + p];
            }
        }
        rows
    }

    #[test]
    fn every_isa_and_dtype_matches_the_reference_on_awkward_sizes() {
        for isa in Isa::available() {
            let k = Kernels::for_isa(isa).unwrap();
            for &(c, hw) in &SIZES {
                let src = pseudo_random(c * hw, (c * 1000 + hw) as u64);
                let rows = transpose(&src, c, hw);
                let expected = reference_planes(&src, hw);
                let run = |f: &dyn Fn(&mut [f32]) -> bool| {
                    let mut acc = vec![f32::NEG_INFINITY; c];
                    assert!(f(&mut acc));
                    acc
                };
                assert_eq!(run(&|a| (k.planes_f32)(&src, hw, a, true)), expected, "{isa:?} planes f32 c={c} hw={hw}");
                assert_eq!(run(&|a| (k.rows_f32)(&rows, a, true)), expected, "{isa:?} rows f32 c={c} hw={hw}");

                let h: Vec<f16> = src.iter().map(|&x| f16::from_f32(x)).collect();
                let hr: Vec<f16> = rows.iter().map(|&x| f16::from_f32(x)).collect();
                let widened: Vec<f32> = h.iter().map(|x| x.to_f32()).collect();
                let expected = reference_planes(&widened, hw);
                assert_eq!(run(&|a| (k.planes_f16)(&h, hw, a, true)), expected, "{isa:?} planes f16 c={c} hw={hw}");
                assert_eq!(run(&|a| (k.rows_f16)(&hr, a, true)), expected, "{isa:?} rows f16 c={c} hw={hw}");

                let b: Vec<bf16> = src.iter().map(|&x| bf16::from_f32(x)).collect();
                let br: Vec<bf16> = rows.iter().map(|&x| bf16::from_f32(x)).collect();
                let widened: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
                let expected = reference_planes(&widened, hw);
                assert_eq!(run(&|a| (k.planes_bf16)(&b, hw, a, true)), expected, "{isa:?} planes bf16 c={c} hw={hw}");
                assert_eq!(run(&|a| (k.rows_bf16)(&br, a, true)), expected, "{isa:?} rows bf16 c={c} hw={hw}");
            }
        }
    }

    #[test]
    fn widening_kernels_match_half_for_every_isa() {
        let h: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        let b: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
        for isa in Isa::available() {
            let k = Kernels::for_isa(isa).unwrap();
            let mut out = vec![0f32; h.len()];
            (k.widen_f16)(&h, &mut out);
            for (x, y) in h.iter().zip(&out) {
                assert!(x.to_f32().to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()), "{isa:?} f16 {x:?}");
            }
            (k.widen_bf16)(&b[..1001], &mut out[..1001]);
            for (x, y) in b.iter().zip(&out[..1001]) {
                assert!(x.to_f32().to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()), "{isa:?} bf16 {x:?}");
            }
        }
    }

    #[test]
    fn software_f16_widening_is_exact_for_every_value() {
        for bits in 0..=u16::MAX {
            let h = f16::from_bits(bits);
            let (ours, theirs) = (f16_bits_to_f32(bits), h.to_f32());
            assert!(ours.to_bits() == theirs.to_bits() || (ours.is_nan() && theirs.is_nan()), "{bits:#06x}");
        }
    }

    #[test]
    fn non_finite_values_are_flagged_wherever_they_sit() {
        for isa in Isa::available() {
            let k = Kernels::for_isa(isa).unwrap();
            for &(c, hw) in &[(3, 5), (64, 49), (70, 17), (2, 100), (4, 3136), (130, 9)] {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    for pos in [0, c * hw / 2, c * hw - 1] {
                        let mut src = pseudo_random(c * hw, 7);
                        src[pos] = bad;
                        let mut acc = vec![f32::NEG_INFINITY; c];
                        assert!(!(k.planes_f32)(&src, hw, &mut acc, true), "{isa:?} planes {bad} at {pos}");
                        let mut acc = vec![f32::NEG_INFINITY; c];
                        assert!(!(k.rows_f32)(&src, &mut acc, true), "{isa:?} rows {bad} at {pos}");
                        let h: Vec<f16> = src.iter().map(|&x| f16::from_f32(x)).collect();
                        let mut acc = vec![f32::NEG_INFINITY; c];
                        assert!(!(k.planes_f16)(&h, hw, &mut acc, true), "{isa:?} planes f16 {bad} at {pos}");
                        let b: Vec<bf16> = src.iter().map(|&x| bf16::from_f32(x)).collect();
                        let mut acc = vec![f32::NEG_INFINITY; c];
                        assert!(!(k.rows_bf16)(&b, &mut acc, true), "{isa:?} rows bf16 {bad} at {pos}");
                    }
                }
            }
        }
    }
}
