//! The small SIMD vocabulary the kernels are written in: a register of `W` f32 lanes
//! ([`Simd`], implemented once per instruction set in `avx2.rs`, `avx512.rs`, ...) and the
//! element types that load into it ([`Elem`]).

use half::{bf16, f16};

/// A SIMD register of `W` f32 lanes and the few operations the kernels need.
///
/// # Safety
/// Implementations use intrinsics of one instruction set: they may only run inside functions
/// compiled with (and CPUs having) that instruction set. Loads read `W` elements at `p`.
pub(super) trait Simd {
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
pub(super) trait Elem: Copy {
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
pub(super) fn f16_bits_to_f32(h: u16) -> f32 {
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
