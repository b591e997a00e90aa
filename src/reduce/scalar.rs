//! One element at a time: the scalar helpers the reductions share (a leaf of `reduce`).

use std::mem::MaybeUninit;

use crate::tensor::Elements;

/// `out` seen as memory to overwrite.
pub(crate) fn as_uninit(out: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and whatever is written through it is an f32.
    unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// Whether every value is finite, without branching per element (so it vectorises): a value
/// is non-finite exactly when its exponent bits are all ones.
#[inline]
pub(crate) fn all_finite(values: &[f32]) -> bool {
    values.iter().fold(0u32, |bad, &x| bad | non_finite(x)) == 0
}

/// 1 when `x` is NaN or infinite (its exponent bits all ones), else 0: a branch-free test to
/// accumulate with `|` in vectorisable loops.
#[inline(always)]
pub(crate) fn non_finite(x: f32) -> u32 {
    ((x.to_bits() & 0x7f80_0000) == 0x7f80_0000) as u32
}

/// Element `i` of a typed buffer, widened to f32.
#[inline]
pub(crate) fn element(e: Elements<'_>, i: usize) -> f32 {
    match e {
        Elements::F32(s) => s[i],
        Elements::F16(s) => s[i].to_f32(),
        Elements::BF16(s) => s[i].to_f32(),
    }
}
