//! Borrowed views of the vendor's tensors: element type, logical shape and element strides.
//!
//! A view never copies. Activation maps are described in the logical order `[N, C, H, W]`
//! whatever their memory layout; the strides say where each element lives, so NCHW, NHWC and
//! padded or sliced buffers are all one kind of view. Token sequences are described as
//! `[N, C, T]` the same way (`[N, T, C]` hidden states are their channels-last layout), with
//! the tokens of each sample that count ([`Tokens`]). Vectors (`[N, C]`) cover model outcomes
//! and maps or sequences already pooled by the vendor.

use half::{bf16, f16};

use crate::error::{Error, Result};

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float (binary16).
    F16,
    /// bfloat16.
    BF16,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// `f32`, `f16` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }
}

/// Memory layout of a contiguous activation map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `[N, C, H, W]`, W fastest (PyTorch, ONNX).
    Nchw,
    /// `[N, H, W, C]`, C fastest (TensorFlow, TensorRT channels-last).
    Nhwc,
}

/// Memory layout of a contiguous token sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqLayout {
    /// `[N, T, C]`, C fastest: a transformer's hidden states (PyTorch `batch_first`, ONNX).
    Ntc,
    /// `[N, C, T]`, T fastest (1-D convolutions, some exporters).
    Nct,
}

/// Which tokens of each sample of a sequence count. Padded positions are never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokens<'a> {
    /// Every one of the T positions.
    All,
    /// `lengths[n]` valid tokens at the start of sample `n` (right padding): one per sample,
    /// each in `1..=T`.
    Lengths(&'a [i64]),
    /// `mask[n * T + t]` non-zero where token `t` of sample `n` counts (`[N, T]` row-major,
    /// any padding side); every sample needs at least one.
    Mask(&'a [u8]),
}

/// What a view holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// A full activation map `[N, C, H, W]` (logical order).
    Map,
    /// A token sequence `[N, C, T]` (logical order), pooled over its valid tokens.
    Sequence,
    /// An activation map already reduced to its per-channel max by the vendor, or a sequence
    /// already pooled by the vendor (the tap's pooling over its valid tokens), `[N, C]`.
    ChannelMax,
    /// A vector per sample, `[N, L]` (the model outcome).
    Vector,
}

/// The typed elements a view borrows.
#[derive(Debug, Clone, Copy)]
pub enum Elements<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// IEEE half-precision floats.
    F16(&'a [f16]),
    /// bfloat16 values.
    BF16(&'a [bf16]),
}

impl Elements<'_> {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Elements::F32(_) => DType::F32,
            Elements::F16(_) => DType::F16,
            Elements::BF16(_) => DType::BF16,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Elements::F32(s) => s.len(),
            Elements::F16(s) => s.len(),
            Elements::BF16(s) => s.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> From<&'a [f32]> for Elements<'a> {
    fn from(s: &'a [f32]) -> Self {
        Elements::F32(s)
    }
}
impl<'a> From<&'a [f16]> for Elements<'a> {
    fn from(s: &'a [f16]) -> Self {
        Elements::F16(s)
    }
}
impl<'a> From<&'a [bf16]> for Elements<'a> {
    fn from(s: &'a [bf16]) -> Self {
        Elements::BF16(s)
    }
}
impl<'a> From<&'a Vec<f32>> for Elements<'a> {
    fn from(s: &'a Vec<f32>) -> Self {
        Elements::F32(s)
    }
}

/// A borrowed tensor: elements, form, logical shape and element strides.
///
/// For [`Form::Map`] the shape and strides are in `[N, C, H, W]` order; for
/// [`Form::Sequence`] `[N, C, T]`; for the two vector forms `[N, C]`. Only the first `rank`
/// entries are meaningful.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    elements: Elements<'a>,
    form: Form,
    // A sequence is stored as a map of H = T, W = 1, so that the map kernels read it as is.
    shape: [usize; 4],
    strides: [usize; 4],
    tokens: Tokens<'a>,
    /// For a `token_logits` tap: `N × T` token ids (the model's input), row-major.
    targets: Option<&'a [i64]>,
}

impl<'a> TensorView<'a> {
    /// A contiguous activation map. `shape` is in the memory order of `layout`
    /// (`[N, C, H, W]` for NCHW, `[N, H, W, C]` for NHWC).
    pub fn map(elements: impl Into<Elements<'a>>, layout: Layout, shape: [usize; 4]) -> Result<Self> {
        let (n, c, h, w) = match layout {
            Layout::Nchw => (shape[0], shape[1], shape[2], shape[3]),
            Layout::Nhwc => (shape[0], shape[3], shape[1], shape[2]),
        };
        let overflow = || Error::InvalidInput(format!("tensor shape {shape:?} overflows"));
        let hw = h.checked_mul(w).ok_or_else(overflow)?;
        let chw = hw.checked_mul(c).ok_or_else(overflow)?;
        let strides = match layout {
            Layout::Nchw => [chw, hw, w, 1],
            Layout::Nhwc => [chw, 1, w.checked_mul(c).ok_or_else(overflow)?, c],
        };
        Self::strided_map(elements, [n, c, h, w], strides)
    }

    /// An activation map with explicit element strides, both in `[N, C, H, W]` order.
    pub fn strided_map(elements: impl Into<Elements<'a>>, shape: [usize; 4], strides: [usize; 4]) -> Result<Self> {
        Self::checked(elements.into(), Form::Map, shape, strides)
    }

    /// A contiguous token sequence; `shape` is in the memory order of `layout` (`[N, T, C]` for
    /// NTC, `[N, C, T]` for NCT). Every token counts until [`TensorView::with_lengths`] or
    /// [`TensorView::with_mask`] says otherwise.
    pub fn sequence(elements: impl Into<Elements<'a>>, layout: SeqLayout, shape: [usize; 3]) -> Result<Self> {
        let (n, c, t) = match layout {
            SeqLayout::Ntc => (shape[0], shape[2], shape[1]),
            SeqLayout::Nct => (shape[0], shape[1], shape[2]),
        };
        let tc = t.checked_mul(c).ok_or_else(|| Error::InvalidInput(format!("tensor shape {shape:?} overflows")))?;
        let strides = match layout {
            SeqLayout::Ntc => [tc, 1, c],
            SeqLayout::Nct => [tc, t, 1],
        };
        Self::strided_sequence(elements, [n, c, t], strides)
    }

    /// A token sequence with explicit element strides, both in `[N, C, T]` order.
    pub fn strided_sequence(elements: impl Into<Elements<'a>>, shape: [usize; 3], strides: [usize; 3]) -> Result<Self> {
        let [n, c, t] = shape;
        Self::checked(elements.into(), Form::Sequence, [n, c, t, 1], [strides[0], strides[1], strides[2], 0])
    }

    /// The same sequence with `lengths[n]` valid tokens at the start of sample `n`. The values
    /// are checked when the view is submitted (each in `1..=T`, one per sample).
    pub fn with_lengths(self, lengths: &'a [i64]) -> Self {
        TensorView { tokens: Tokens::Lengths(lengths), ..self }
    }

    /// The same sequence with a padding mask: `mask[n * T + t]` non-zero where token `t` of
    /// sample `n` counts. Checked when the view is submitted (`N × T` bytes, at least one
    /// token per sample).
    pub fn with_mask(self, mask: &'a [u8]) -> Self {
        TensorView { tokens: Tokens::Mask(mask), ..self }
    }

    /// Which tokens of each sample count ([`Tokens::All`] for anything but a sequence).
    pub fn tokens(&self) -> Tokens<'a> {
        self.tokens
    }

    /// The same sequence of logits `[N, T, V]` with the token ids the model read,
    /// `ids[n * T + t]` (row-major `[N, T]`): the logits at position `t` are scored on the
    /// token at `t + 1`, wherever both positions count. Checked when the view is submitted
    /// (`N × T` ids, each in `0..V` where it is scored). For `token_logits` taps only.
    pub fn with_targets(self, ids: &'a [i64]) -> Self {
        TensorView { targets: Some(ids), ..self }
    }

    /// The token ids of a sequence of logits, if given.
    pub fn targets(&self) -> Option<&'a [i64]> {
        self.targets
    }

    /// A row-major `[N, C]` tensor: a model outcome ([`Form::Vector`]) or a map already reduced
    /// to its per-channel max ([`Form::ChannelMax`]).
    pub fn vectors(elements: impl Into<Elements<'a>>, form: Form, n: usize, c: usize) -> Result<Self> {
        Self::strided_vectors(elements, form, [n, c], [c, 1])
    }

    /// A `[N, C]` tensor with explicit element strides.
    pub fn strided_vectors(
        elements: impl Into<Elements<'a>>,
        form: Form,
        shape: [usize; 2],
        strides: [usize; 2],
    ) -> Result<Self> {
        if matches!(form, Form::Map | Form::Sequence) {
            return Err(Error::InvalidInput(format!("a [N, C] tensor cannot have form {form:?}")));
        }
        Self::checked(elements.into(), form, [shape[0], shape[1], 1, 1], [strides[0], strides[1], 0, 0])
    }

    fn checked(elements: Elements<'a>, form: Form, shape: [usize; 4], strides: [usize; 4]) -> Result<Self> {
        let view = TensorView { elements, form, shape, strides, tokens: Tokens::All, targets: None };
        let needed = view.extent()?;
        if needed > elements.len() {
            return Err(Error::InvalidInput(format!(
                "tensor of shape {:?} with strides {:?} spans {needed} elements, but only {} were given",
                view.shape(),
                view.strides(),
                elements.len()
            )));
        }
        Ok(view)
    }

    /// Number of elements from the first to one past the last addressed element.
    fn extent(&self) -> Result<usize> {
        Self::span(self.shape(), self.strides())
            .ok_or_else(|| Error::InvalidInput(format!("tensor shape {:?} overflows", self.shape())))
    }

    /// Elements a tensor of this shape and element strides addresses, from the first to one
    /// past the last (0 when a dimension is 0); `None` when that overflows. What a binding must
    /// make readable before it builds a view over foreign memory.
    pub fn span(shape: &[usize], strides: &[usize]) -> Option<usize> {
        if shape.contains(&0) {
            return Some(0);
        }
        shape
            .iter()
            .zip(strides)
            .try_fold(0usize, |last, (&dim, &stride)| (dim - 1).checked_mul(stride).and_then(|s| last.checked_add(s)))
            .and_then(|last| last.checked_add(1))
    }

    /// The borrowed elements.
    pub fn elements(&self) -> Elements<'a> {
        self.elements
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.elements.dtype()
    }

    /// What the view holds.
    pub fn form(&self) -> Form {
        self.form
    }

    /// Number of dimensions: 4 for maps, 3 for sequences, 2 for vectors.
    pub fn rank(&self) -> usize {
        match self.form {
            Form::Map => 4,
            Form::Sequence => 3,
            Form::ChannelMax | Form::Vector => 2,
        }
    }

    /// Logical shape (`[N, C, H, W]`, `[N, C, T]` or `[N, C]`).
    pub fn shape(&self) -> &[usize] {
        &self.shape[..self.rank()]
    }

    /// Element strides, in the order of [`TensorView::shape`].
    pub fn strides(&self) -> &[usize] {
        &self.strides[..self.rank()]
    }

    /// Batch size.
    pub fn batch(&self) -> usize {
        self.shape[0]
    }

    /// Channels (or vector length).
    pub fn channels(&self) -> usize {
        self.shape[1]
    }

    /// `H × W` for maps, T for sequences, 1 for vectors.
    pub fn spatial(&self) -> usize {
        self.shape[2] * self.shape[3]
    }

    /// The memory arrangement of one sample's map, used to pick a reduction kernel.
    pub(crate) fn arrangement(&self) -> Arrangement {
        let [_, c, h, w] = self.shape;
        let [_, sc, sh, sw] = self.strides;
        // Dimensions of extent 1 can have any stride without changing the addresses.
        let planar = (w == 1 || sw == 1) && (h == 1 || sh == w) && (c == 1 || sc == h * w);
        let channels_last = (c == 1 || sc == 1) && (w == 1 || sw == c) && (h == 1 || sh == w * c);
        if planar {
            Arrangement::Planar
        } else if channels_last {
            Arrangement::ChannelsLast
        } else {
            Arrangement::Strided
        }
    }

    /// Offset in elements of sample `n`.
    pub(crate) fn sample_offset(&self, n: usize) -> usize {
        n * self.strides[0]
    }
}

/// How one sample's map sits in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrangement {
    /// C planes of H×W contiguous elements (NCHW).
    Planar,
    /// H×W rows of C contiguous elements (NHWC).
    ChannelsLast,
    /// Anything else: walked element by element.
    Strided,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_map_to_logical_strides() {
        let data = vec![0f32; 2 * 3 * 4 * 5];
        let nchw = TensorView::map(&data, Layout::Nchw, [2, 3, 4, 5]).unwrap();
        assert_eq!(nchw.shape(), &[2, 3, 4, 5]);
        assert_eq!(nchw.strides(), &[60, 20, 5, 1]);
        assert_eq!(nchw.arrangement(), Arrangement::Planar);
        let nhwc = TensorView::map(&data, Layout::Nhwc, [2, 4, 5, 3]).unwrap();
        assert_eq!(nhwc.shape(), &[2, 3, 4, 5]);
        assert_eq!(nhwc.strides(), &[60, 1, 15, 3]);
        assert_eq!(nhwc.arrangement(), Arrangement::ChannelsLast);
    }

    #[test]
    fn short_buffers_are_refused() {
        let data = vec![0f32; 10];
        let err = TensorView::map(&data, Layout::Nchw, [1, 2, 3, 2]).unwrap_err();
        assert!(err.to_string().contains("spans 12 elements"), "{err}");
        let err = TensorView::vectors(&data, Form::Vector, 3, 4).unwrap_err();
        assert!(err.to_string().contains("only 10"), "{err}");
    }

    #[test]
    fn padded_rows_are_strided() {
        // W = 3 stored in rows of 4 (one element of padding).
        let data = vec![0f32; 2 * 2 * 4];
        let v = TensorView::strided_map(&data, [1, 2, 2, 3], [16, 8, 4, 1]).unwrap();
        assert_eq!(v.arrangement(), Arrangement::Strided);
    }

    #[test]
    fn overflowing_shapes_are_errors() {
        let data = vec![0f32; 4];
        assert!(TensorView::strided_map(&data, [usize::MAX, 2, 2, 2], [usize::MAX, 1, 1, 1]).is_err());
    }
}
