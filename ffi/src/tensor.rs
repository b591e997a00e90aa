//! The C tensor descriptor and its checked conversion into a borrowed view.

use std::ffi::c_void;

use half::{bf16, f16};
use mint_audit::{Elements, Form, Layout, SeqLayout, TensorView};

use crate::status::{Failure, MINT_ERR_INVALID_INPUT};

/// 32-bit IEEE float.
pub const MINT_DTYPE_F32: u32 = 0;
/// 16-bit IEEE float (binary16).
pub const MINT_DTYPE_F16: u32 = 1;
/// bfloat16.
pub const MINT_DTYPE_BF16: u32 = 2;

/// A full activation map: rank 4.
pub const MINT_FORM_MAP: u32 = 0;
/// An activation map already reduced to its per-channel max (e.g. `amax` over H and W on
/// the GPU), `[N, C]`: rank 2. Gives the same features as the full map, without the copy.
/// For a token-sequence tap: the sequence already pooled by the tap's pooling over each
/// sample's valid tokens.
pub const MINT_FORM_CHANNEL_MAX: u32 = 1;
/// A vector per sample (the model outcome), `[N, L]`: rank 2.
pub const MINT_FORM_VECTOR: u32 = 2;
/// A token sequence (a transformer's hidden states): rank 3, with `MINT_LAYOUT_NTC`,
/// `MINT_LAYOUT_NCT` or `MINT_LAYOUT_STRIDED` (logical order `[N, C, T]`). Which tokens of
/// each sample count is given by `mint_auditor_submit_tokens`; every one otherwise.
/// Since ABI 1.4.
pub const MINT_FORM_SEQUENCE: u32 = 3;

/// Contiguous, row-major; for maps `shape` is `[N, C, H, W]`.
pub const MINT_LAYOUT_NCHW: u32 = 0;
/// Contiguous, channels last; for maps `shape` is `[N, H, W, C]`.
pub const MINT_LAYOUT_NHWC: u32 = 1;
/// Explicit `strides` (in elements, non-negative), with `shape` and `strides` both in logical
/// order: `[N, C, H, W]` for maps, `[N, C, T]` for sequences, `[N, C]` otherwise.
pub const MINT_LAYOUT_STRIDED: u32 = 2;
/// Contiguous token sequence, channels last: `shape` is `[N, T, C]`. Since ABI 1.4.
pub const MINT_LAYOUT_NTC: u32 = 3;
/// Contiguous token sequence, tokens last: `shape` is `[N, C, T]`. Since ABI 1.4.
pub const MINT_LAYOUT_NCT: u32 = 4;

/// Which tokens of each sample of a `MINT_FORM_SEQUENCE` tap count: at most one of `lengths`
/// and `mask` is set; both NULL means every position. For a `token_logits` tap, also the token
/// ids the model read. Read during the call only. Since ABI 1.4.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct mint_tokens {
    /// NULL, or `N` valid lengths, each in `1..=T`: tokens `0..length` of each sample count
    /// (right padding).
    pub lengths: *const i64,
    /// NULL, or an `N × T` row-major padding mask: non-zero where a token counts (any
    /// padding side); each sample needs at least one.
    pub mask: *const u8,
    /// For a `token_logits` tap (logits `[N, T, V]`), the `N × T` row-major token ids the
    /// model read: the logits at position t are scored on the id at t + 1 where both count,
    /// and those ids must lie in `0..V`. NULL for every other tap.
    pub targets: *const i64,
}

/// Describes one tap's tensor for a batch. Nothing is copied: `data` is read during the call
/// only, and the caller keeps ownership of every pointer.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct mint_tensor {
    /// First element; aligned to the element size. Read during the call only.
    pub data: *const c_void,
    /// `MINT_DTYPE_*`.
    pub dtype: u32,
    /// `MINT_FORM_*`.
    pub form: u32,
    /// `MINT_LAYOUT_*`. For rank-2 tensors NCHW and NHWC both mean row-major.
    pub layout: u32,
    /// 4 for `MINT_FORM_MAP`, 3 for `MINT_FORM_SEQUENCE`, 2 otherwise.
    pub rank: usize,
    /// `rank` non-negative dimensions (order: see the layout).
    pub shape: *const i64,
    /// `rank` element strides for `MINT_LAYOUT_STRIDED`; ignored (may be NULL) otherwise.
    pub strides: *const i64,
}

fn bad(tap: usize, what: impl std::fmt::Display) -> Failure {
    Failure::new(MINT_ERR_INVALID_INPUT, format!("taps[{tap}]: {what}"))
}

unsafe fn dims(ptr: *const i64, rank: usize, tap: usize, what: &str) -> Result<Vec<usize>, Failure> {
    if ptr.is_null() {
        return Err(bad(tap, format!("`{what}` is NULL")));
    }
    // SAFETY: the caller promises `rank` readable values.
    let raw = unsafe { std::slice::from_raw_parts(ptr, rank) };
    raw.iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(tap, format!("`{what}` has a negative value {d}"))))
        .collect()
}

/// Converts a descriptor into a view, checking everything that can be checked: enum values,
/// rank, signs, alignment, and that the extent is addressable.
///
/// # Safety
/// `t.data` must point to at least the elements the shape and strides address, and `shape`
/// (and `strides` when strided) to `rank` values, all valid for `'a`.
pub(crate) unsafe fn view<'a>(t: &'a mint_tensor, tap: usize) -> Result<TensorView<'a>, Failure> {
    let form = match t.form {
        MINT_FORM_MAP => Form::Map,
        MINT_FORM_CHANNEL_MAX => Form::ChannelMax,
        MINT_FORM_VECTOR => Form::Vector,
        MINT_FORM_SEQUENCE => Form::Sequence,
        other => return Err(bad(tap, format!("unknown form {other}"))),
    };
    let expected_rank = match form {
        Form::Map => 4,
        Form::Sequence => 3,
        Form::ChannelMax | Form::Vector => 2,
    };
    if t.rank != expected_rank {
        return Err(bad(tap, format!("rank {} given, but this form needs rank {expected_rank}", t.rank)));
    }
    let (size, align) = match t.dtype {
        MINT_DTYPE_F32 => (4, std::mem::align_of::<f32>()),
        MINT_DTYPE_F16 | MINT_DTYPE_BF16 => (2, std::mem::align_of::<u16>()),
        other => return Err(bad(tap, format!("unknown dtype {other}"))),
    };
    // SAFETY: forwarded from the caller.
    let shape = unsafe { dims(t.shape, t.rank, tap, "shape") }?;
    let sequence_layout = matches!(t.layout, MINT_LAYOUT_NTC | MINT_LAYOUT_NCT);
    let strides = match t.layout {
        MINT_LAYOUT_NCHW | MINT_LAYOUT_NHWC | MINT_LAYOUT_NTC | MINT_LAYOUT_NCT => None,
        // SAFETY: forwarded from the caller.
        MINT_LAYOUT_STRIDED => Some(unsafe { dims(t.strides, t.rank, tap, "strides") }?),
        other => return Err(bad(tap, format!("unknown layout {other}"))),
    };
    if strides.is_none() && (form == Form::Sequence) != sequence_layout {
        return Err(bad(
            tap,
            "a sequence takes MINT_LAYOUT_NTC, MINT_LAYOUT_NCT or MINT_LAYOUT_STRIDED; those two are for sequences only",
        ));
    }
    // Elements addressed, from the logical shape and strides (contiguous layouts: the product).
    let extent = match &strides {
        None => shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)),
        Some(st) => TensorView::span(&shape, st),
    }
    .ok_or_else(|| bad(tap, "shape overflows"))?;
    if extent > 0 {
        if t.data.is_null() {
            return Err(bad(tap, "`data` is NULL"));
        }
        if !(t.data as usize).is_multiple_of(align) {
            return Err(bad(tap, format!("`data` is not aligned to {align} bytes")));
        }
        if extent.checked_mul(size).is_none_or(|b| b > isize::MAX as usize) {
            return Err(bad(tap, "tensor is larger than the address space"));
        }
    }
    // SAFETY: non-null and aligned when extent > 0 (checked above); dangling-but-aligned for
    // empty slices; the caller promises `extent` readable elements.
    let elements = unsafe {
        match t.dtype {
            MINT_DTYPE_F32 => Elements::F32(slice(t.data as *const f32, extent)),
            MINT_DTYPE_F16 => Elements::F16(slice(t.data as *const f16, extent)),
            _ => Elements::BF16(slice(t.data as *const bf16, extent)),
        }
    };
    let view = match (form, strides) {
        (Form::Map, None) => {
            let layout = if t.layout == MINT_LAYOUT_NHWC { Layout::Nhwc } else { Layout::Nchw };
            TensorView::map(elements, layout, [shape[0], shape[1], shape[2], shape[3]])
        }
        (Form::Map, Some(s)) => {
            TensorView::strided_map(elements, [shape[0], shape[1], shape[2], shape[3]], [s[0], s[1], s[2], s[3]])
        }
        (Form::Sequence, None) => {
            let layout = if t.layout == MINT_LAYOUT_NTC { SeqLayout::Ntc } else { SeqLayout::Nct };
            TensorView::sequence(elements, layout, [shape[0], shape[1], shape[2]])
        }
        (Form::Sequence, Some(s)) => {
            TensorView::strided_sequence(elements, [shape[0], shape[1], shape[2]], [s[0], s[1], s[2]])
        }
        (_, None) => TensorView::vectors(elements, form, shape[0], shape[1]),
        (_, Some(s)) => TensorView::strided_vectors(elements, form, [shape[0], shape[1]], [s[0], s[1]]),
    };
    view.map_err(|e| bad(tap, e))
}

/// The same view with the tokens `tokens` selects (NULL: every position).
///
/// # Safety
/// `tokens` is NULL or readable, and its non-NULL pointers hold `N` lengths, `N × T` mask
/// bytes or `N × T` token ids for this view's `N` and `T`, valid for `'a`.
pub(crate) unsafe fn with_tokens<'a>(
    view: TensorView<'a>,
    tokens: *const mint_tokens,
    tap: usize,
) -> Result<TensorView<'a>, Failure> {
    if tokens.is_null() {
        return Ok(view);
    }
    // SAFETY: non-NULL and readable, per the caller.
    let tokens = unsafe { &*tokens };
    let view = if tokens.targets.is_null() {
        view
    } else if view.form() != Form::Sequence {
        return Err(bad(tap, "token ids apply to MINT_FORM_SEQUENCE tensors of logits only"));
    } else {
        let len = view.batch().checked_mul(view.spatial()).ok_or_else(|| bad(tap, "token id count overflows"))?;
        // SAFETY: `N × T` ids, per the caller.
        view.with_targets(unsafe { std::slice::from_raw_parts(tokens.targets, len) })
    };
    match (tokens.lengths.is_null(), tokens.mask.is_null()) {
        (true, true) => Ok(view),
        (false, false) => Err(bad(tap, "give `lengths` or `mask`, not both")),
        _ if view.form() != Form::Sequence => {
            Err(bad(tap, "lengths or a mask apply to MINT_FORM_SEQUENCE tensors only"))
        }
        (false, true) => {
            // SAFETY: `N` lengths, per the caller.
            Ok(view.with_lengths(unsafe { std::slice::from_raw_parts(tokens.lengths, view.batch()) }))
        }
        (true, false) => {
            let len = view.batch().checked_mul(view.spatial()).ok_or_else(|| bad(tap, "mask size overflows"))?;
            // SAFETY: `N × T` bytes, per the caller.
            Ok(view.with_mask(unsafe { std::slice::from_raw_parts(tokens.mask, len) }))
        }
    }
}

unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 {
        &[]
    } else {
        // SAFETY: see `view`.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}
