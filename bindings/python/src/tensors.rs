//! Reading a tap from Python without copying: numpy arrays (and anything else exposing
//! `__array_interface__`) and torch tensors (and anything else exposing `__dlpack__`) become
//! [`TensorView`]s over the producer's own memory.
//!
//! The array interface comes first because numpy's `__dlpack__` refuses read-only arrays;
//! DLPack is what torch offers, and the only protocol that carries bfloat16. A rank-4 tensor
//! is an activation map in the logical order `[N, C, H, W]` whatever its memory layout (a
//! channels-last torch tensor, or `nhwc.transpose(0, 3, 1, 2)` of a numpy array, is read in
//! place through its strides); a rank-2 tensor is a model outcome, or a map the caller already
//! reduced to its per-channel max.

use std::ffi::{c_void, CStr};

use half::{bf16, f16};
use mint_audit::config::TapKind;
use mint_audit::{DType, Elements, Form, TensorView};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods, PyDict, PyTuple};

use crate::errors::invalid_input;

/// A tap read from a Python object: where its elements are and how they are laid out. Holds
/// the object (or the DLPack capsule) so that the memory stays alive as long as the view.
pub(crate) struct Borrowed<'py> {
    _owner: Bound<'py, PyAny>,
    data: *const u8,
    dtype: Stored,
    shape: Vec<usize>,
    /// In elements.
    strides: Vec<usize>,
}

/// What a borrowed tensor's elements are: floats for taps, integers or booleans for token
/// lengths and padding masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    Float(DType),
    Int { bytes: usize, signed: bool },
    Bool,
}

impl std::fmt::Display for Stored {
    /// numpy's type string (`<i8`, `|b1`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stored::Float(d) => write!(f, "{}", d.name()),
            Stored::Int { bytes, signed } => {
                write!(f, "{}{}{bytes}", if *bytes == 1 { '|' } else { '<' }, if *signed { 'i' } else { 'u' })
            }
            Stored::Bool => write!(f, "|b1"),
        }
    }
}

impl Stored {
    fn size(self) -> usize {
        match self {
            Stored::Float(d) => d.size(),
            Stored::Int { bytes, .. } => bytes,
            Stored::Bool => 1,
        }
    }
}

/// DLPack's C structures (dlpack.h, ABI 0.x: what `__dlpack__()` returns without arguments).
#[repr(C)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

#[repr(C)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *const i64,
    strides: *const i64,
    byte_offset: u64,
}

#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

const DL_CPU: i32 = 1;
const DL_CUDA_HOST: i32 = 3;
const DL_INT: u8 = 0;
const DL_UINT: u8 = 1;
const DL_FLOAT: u8 = 2;
const DL_BFLOAT: u8 = 4;
const DL_BOOL: u8 = 6;
const DLTENSOR: &CStr = c"dltensor";

/// Reads `object`, the tap named `tap`.
pub(crate) fn borrow<'py>(object: &Bound<'py, PyAny>, tap: &str) -> PyResult<Borrowed<'py>> {
    borrow_labelled(object, &format!("tap '{tap}'"))
}

/// Reads `object`, named `label` in errors (`tap 'stage1'`, `lengths`).
pub(crate) fn borrow_labelled<'py>(object: &Bound<'py, PyAny>, label: &str) -> PyResult<Borrowed<'py>> {
    let tap = label;
    let bad = |what: String| invalid_input(format!("{tap}: {what}"));
    if let Ok(interface) = object.getattr("__array_interface__") {
        return from_array_interface(object, &interface, tap);
    }
    if object.hasattr("__dlpack__")? {
        let capsule = object.call_method0("__dlpack__").map_err(|e| {
            bad(format!("its __dlpack__ failed: {e} (a torch tensor that requires grad must be detached)"))
        })?;
        return from_dlpack(capsule, tap);
    }
    Err(bad(format!(
        "expected a numpy array or a torch tensor (an object with __array_interface__ or __dlpack__), got {}",
        object.get_type().name()?
    )))
}

fn from_array_interface<'py>(
    object: &Bound<'py, PyAny>,
    interface: &Bound<'py, PyAny>,
    tap: &str,
) -> PyResult<Borrowed<'py>> {
    let bad = |what: String| invalid_input(format!("{tap}: {what}"));
    let interface = interface.cast::<PyDict>().map_err(|_| bad("__array_interface__ is not a dict".into()))?;
    let item = |key: &str| -> PyResult<Bound<'py, PyAny>> {
        interface.get_item(key)?.ok_or_else(|| bad(format!("__array_interface__ has no '{key}'")))
    };
    let typestr: String = item("typestr")?.extract()?;
    let dtype = match typestr.as_str() {
        "<f4" | "=f4" => Stored::Float(DType::F32),
        "<f2" | "=f2" => Stored::Float(DType::F16),
        "|b1" => Stored::Bool,
        "|u1" => Stored::Int { bytes: 1, signed: false },
        "|i1" => Stored::Int { bytes: 1, signed: true },
        "<i4" | "=i4" => Stored::Int { bytes: 4, signed: true },
        "<u4" | "=u4" => Stored::Int { bytes: 4, signed: false },
        "<i8" | "=i8" => Stored::Int { bytes: 8, signed: true },
        other => {
            return Err(bad(format!(
                "dtype '{other}' is not read: give float32 or float16 (bfloat16 through DLPack, e.g. a torch tensor)"
            )))
        }
    };
    let data = item("data")?;
    let data = data.cast::<PyTuple>().map_err(|_| bad("its data is not a (pointer, read-only) tuple".into()))?;
    let address: usize = data.get_item(0)?.extract()?;
    let shape: Vec<usize> = item("shape")?.extract()?;
    let size = dtype.size();
    let strides = match interface.get_item("strides")? {
        Some(s) if !s.is_none() => {
            let bytes: Vec<isize> = s.extract()?;
            bytes
                .iter()
                .map(|&b| {
                    if b < 0 || !(b as usize).is_multiple_of(size) {
                        Err(bad(format!(
                            "byte strides {bytes:?} are not read: each must be a non-negative multiple of {size}"
                        )))
                    } else {
                        Ok(b as usize / size)
                    }
                })
                .collect::<PyResult<Vec<usize>>>()?
        }
        _ => row_major(&shape),
    };
    Ok(Borrowed { _owner: object.clone(), data: address as *const u8, dtype, shape, strides })
}

fn from_dlpack<'py>(capsule: Bound<'py, PyAny>, tap: &str) -> PyResult<Borrowed<'py>> {
    let bad = |what: String| invalid_input(format!("{tap}: {what}"));
    let pointer = capsule
        .cast::<PyCapsule>()
        .map_err(|_| bad("__dlpack__ did not return a capsule".into()))?
        .pointer_checked(Some(DLTENSOR))
        .map_err(|e| bad(format!("not a DLPack capsule: {e}")))?;
    // SAFETY: a capsule named "dltensor" holds a DLManagedTensor, alive until the capsule's
    // destructor runs (which calls its deleter, since we do not consume it): the capsule is
    // kept in the returned value for as long as the view is used.
    let tensor = unsafe { &pointer.cast::<DLManagedTensor>().as_ref().dl_tensor };
    if tensor.device.device_type != DL_CPU && tensor.device.device_type != DL_CUDA_HOST {
        return Err(bad(format!(
            "the tensor is on a device (DLPack device type {}): reduce it there and hand over \
             the channel maxima (mint_audit.torch does), or move it to the CPU",
            tensor.device.device_type
        )));
    }
    let dtype = match (tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes) {
        (DL_FLOAT, 32, 1) => Stored::Float(DType::F32),
        (DL_FLOAT, 16, 1) => Stored::Float(DType::F16),
        (DL_BFLOAT, 16, 1) => Stored::Float(DType::BF16),
        (DL_BOOL, 8, 1) => Stored::Bool,
        (DL_INT, bits @ (8 | 32 | 64), 1) => Stored::Int { bytes: bits as usize / 8, signed: true },
        (DL_UINT, bits @ (8 | 32), 1) => Stored::Int { bytes: bits as usize / 8, signed: false },
        (code, bits, lanes) => {
            return Err(bad(format!(
                "DLPack dtype (code {code}, {bits} bits, {lanes} lanes) is not read: give float32, float16 or bfloat16"
            )))
        }
    };
    let ndim = usize::try_from(tensor.ndim).map_err(|_| bad(format!("negative rank {}", tensor.ndim)))?;
    if ndim > 8 || (ndim > 0 && tensor.shape.is_null()) {
        return Err(bad(format!("rank {ndim} is not read")));
    }
    let signed = |p: *const i64, what: &str| -> PyResult<Vec<usize>> {
        // SAFETY: DLPack's `shape` (and non-NULL `strides`) hold `ndim` values (checked non-NULL).
        let values = unsafe { std::slice::from_raw_parts(p, ndim) };
        values
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| bad(format!("negative {what} {v} is not read"))))
            .collect()
    };
    let shape = if ndim == 0 { Vec::new() } else { signed(tensor.shape, "extent")? };
    let strides =
        if tensor.strides.is_null() || ndim == 0 { row_major(&shape) } else { signed(tensor.strides, "stride")? };
    let offset = usize::try_from(tensor.byte_offset).map_err(|_| bad("byte offset overflows".into()))?;
    let data = (tensor.data as *const u8).wrapping_add(offset);
    Ok(Borrowed { _owner: capsule, data, dtype, shape, strides })
}

/// Element strides of a C-contiguous array.
fn row_major(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1].saturating_mul(shape[i + 1]);
    }
    strides
}

impl Borrowed<'_> {
    /// The dimensions, in the producer's logical order.
    pub(crate) fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Elements from the first to one past the last addressed, checked to be aligned,
    /// addressable and non-NULL.
    fn extent(&self, what: &str) -> PyResult<usize> {
        let bad = |why: String| invalid_input(format!("{what}: {why}"));
        let size = self.dtype.size();
        if !(self.data as usize).is_multiple_of(size) {
            return Err(bad(format!("its data is not aligned to its {size}-byte elements")));
        }
        let extent = TensorView::span(&self.shape, &self.strides)
            .filter(|&n| n.checked_mul(size).is_some_and(|b| b <= isize::MAX as usize))
            .ok_or_else(|| bad(format!("shape {:?} with strides {:?} overflows", self.shape, self.strides)))?;
        if extent > 0 && self.data.is_null() {
            return Err(bad("its data pointer is NULL".into()));
        }
        Ok(extent)
    }

    /// Every element of an integer or boolean tensor (token lengths, a padding mask), in
    /// row-major order of its logical shape, as i64: a copy, small next to the taps.
    pub(crate) fn integers(&self, what: &str) -> PyResult<Vec<i64>> {
        if let Stored::Float(_) = self.dtype {
            return Err(invalid_input(format!("{what}: give integers or booleans, not floats")));
        }
        self.extent(what)?;
        let count = self.shape.iter().product::<usize>();
        let mut values = Vec::with_capacity(count);
        let mut index = vec![0usize; self.shape.len()];
        for _ in 0..count {
            let offset: usize = index.iter().zip(&self.strides).map(|(i, s)| i * s).sum();
            // SAFETY: `offset` addresses an element inside the extent checked above (every index
            // is below its dimension), of the size and alignment `dtype` says; `self` keeps
            // the producer's memory alive.
            let value = unsafe {
                let p = self.data.add(offset * self.dtype.size());
                match self.dtype {
                    Stored::Bool | Stored::Int { bytes: 1, signed: false } => i64::from(*p),
                    Stored::Int { bytes: 1, .. } => i64::from(*p.cast::<i8>()),
                    Stored::Int { bytes: 4, signed: true } => i64::from(*p.cast::<i32>()),
                    Stored::Int { bytes: 4, .. } => i64::from(*p.cast::<u32>()),
                    _ => *p.cast::<i64>(),
                }
            };
            values.push(value);
            // Next index, last dimension fastest.
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < self.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(values)
    }

    /// The view the library reads, for a tap of `kind`: rank 4 is a map, rank 3 a token
    /// sequence `[N, T, C]` (any memory layout), rank 2 an outcome vector, token
    /// log-probabilities `[N, T]`, or (for a map or sequence tap) channel maxima or the
    /// vendor's pooling.
    pub(crate) fn view(&self, kind: TapKind, tap: &str) -> PyResult<TensorView<'_>> {
        let bad = |what: String| invalid_input(format!("tap '{tap}': {what}"));
        let Stored::Float(dtype) = self.dtype else {
            return Err(bad(format!("dtype '{}' is not read: give float32, float16 or bfloat16 values", self.dtype)));
        };
        let extent = self.extent(&format!("tap '{tap}'"))?;
        let elements = if extent == 0 {
            match dtype {
                DType::F32 => Elements::F32(&[]),
                DType::F16 => Elements::F16(&[]),
                DType::BF16 => Elements::BF16(&[]),
            }
        } else {
            // SAFETY: the producer (numpy, torch) describes `extent` elements of this dtype at
            // `data` through this shape and strides (checked above to be addressable and
            // aligned); `self` holds the producer's object or capsule, which keeps the memory
            // alive for the borrow. Like any native reader that releases the GIL, we rely on
            // the caller not to resize the tensor during the call.
            unsafe {
                match dtype {
                    DType::F32 => Elements::F32(std::slice::from_raw_parts(self.data.cast::<f32>(), extent)),
                    DType::F16 => Elements::F16(std::slice::from_raw_parts(self.data.cast::<f16>(), extent)),
                    DType::BF16 => Elements::BF16(std::slice::from_raw_parts(self.data.cast::<bf16>(), extent)),
                }
            }
        };
        let library = |e: mint_audit::Error| bad(e.to_string());
        match (self.shape.len(), kind) {
            (4, _) => {
                let (s, t) = (&self.shape, &self.strides);
                TensorView::strided_map(elements, [s[0], s[1], s[2], s[3]], [t[0], t[1], t[2], t[3]]).map_err(library)
            }
            (3, _) => {
                // [N, T, C] as torch lays out hidden states; the library's order is [N, C, T].
                let (s, t) = (&self.shape, &self.strides);
                TensorView::strided_sequence(elements, [s[0], s[2], s[1]], [t[0], t[2], t[1]]).map_err(library)
            }
            (2, TapKind::TokenLogprobs) => {
                // [N, T]: one log-probability per token.
                let (s, t) = (&self.shape, &self.strides);
                TensorView::strided_sequence(elements, [s[0], 1, s[1]], [t[0], 1, t[1]]).map_err(library)
            }
            (2, kind) => {
                let form = if kind == TapKind::Outcome { Form::Vector } else { Form::ChannelMax };
                let (s, t) = (&self.shape, &self.strides);
                TensorView::strided_vectors(elements, form, [s[0], s[1]], [t[0], t[1]]).map_err(library)
            }
            (rank, TapKind::Outcome) => Err(bad(format!("rank {rank} given; an outcome tap takes [N, L]"))),
            (rank, TapKind::TokenSequence) => Err(bad(format!(
                "rank {rank} given; a token-sequence tap takes [N, T, C] (any memory layout) or its pooling [N, C]"
            ))),
            (rank, _) => Err(bad(format!(
                "rank {rank} given; a map tap takes [N, C, H, W] (any memory layout) or its channel maxima [N, C]"
            ))),
        }
    }
}
