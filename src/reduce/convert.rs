//! Typed buffers widened to f32 through the kernels `dispatch` chose: the copies the capture
//! and the logits scoring make.

use std::mem::MaybeUninit;

use super::dispatch;
use crate::tensor::Elements;

/// Copies `dst.len()` elements of `e` from `start` into `dst` as f32 with the best kernels for
/// this CPU; every element of `dst` is written. Returns the kernels' finiteness hint: `true`
/// means all finite, `false` that the caller must look exactly.
pub(crate) fn copy_to_f32(e: Elements<'_>, start: usize, dst: &mut [MaybeUninit<f32>]) -> bool {
    let (k, end) = (dispatch::best(), start + dst.len());
    match e {
        Elements::F32(s) => (k.copy_f32)(&s[start..end], dst),
        Elements::F16(s) => (k.copy_f16)(&s[start..end], dst),
        Elements::BF16(s) => (k.copy_bf16)(&s[start..end], dst),
    }
}

/// Channels-last rows of `c` channels (`hw` of them, from `start` in `e`) into `c` planes of
/// `hw` pixels in `dst`, as f32, with the best kernels for this CPU; every element of `dst` is
/// written. Returns the finiteness hint, as [`copy_to_f32`].
pub(crate) fn rows_to_planes(e: Elements<'_>, start: usize, c: usize, hw: usize, dst: &mut [MaybeUninit<f32>]) -> bool {
    let (k, end) = (dispatch::best(), start + c * hw);
    match e {
        Elements::F32(s) => (k.transpose_f32)(&s[start..end], c, hw, dst),
        Elements::F16(s) => (k.transpose_f16)(&s[start..end], c, hw, dst),
        Elements::BF16(s) => (k.transpose_bf16)(&s[start..end], c, hw, dst),
    }
}
