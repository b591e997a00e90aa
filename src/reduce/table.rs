//! The table of kernel functions one instruction set offers, and the instruction sets: the
//! types that the kernels fill (`kernels`), the tuning measures (`tune`) and `dispatch` hands
//! out. A leaf: it depends on nothing else of the library.

use std::mem::MaybeUninit;

use half::{bf16, f16};

/// `acc[k] = max(acc[k], max(plane k))` over planes of `hw` elements. With `check`, returns
/// `false` when the values read may include NaN or infinities (without, always `true`).
pub(crate) type PlanesFn<T> = fn(src: &[T], hw: usize, acc: &mut [f32], check: bool) -> bool;
/// `acc[j] = max(acc[j], src[r * c + j])` over every row `r` of `c = acc.len()` channels.
/// With `check`, returns `false` when the values read may include NaN or infinities.
pub(crate) type RowsFn<T> = fn(src: &[T], acc: &mut [f32], check: bool) -> bool;

/// `acc[j] += src[r * c + j]` over every row `r` of `c = acc.len()` channels.
pub(crate) type SumRowsFn<T> = fn(src: &[T], acc: &mut [f32]);
/// The sum of a contiguous run of values.
pub(crate) type SumRunFn<T> = fn(src: &[T]) -> f32;

/// An instruction set the kernels were compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// The target's baseline (SSE2 on x86-64; portable code elsewhere).
    Baseline,
    /// AVX2 with F16C.
    Avx2,
    /// AVX-512F and AVX-512BW with F16C.
    Avx512,
}

impl Isa {
    /// The name in reports and the `reduce_isa` label.
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
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("f16c")
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

/// Copies `src` into `dst` (same length) as f32, widening half-precision values; every
/// element of `dst` is written. Returns `false` when the values may include NaN or infinities.
pub(crate) type CopyFn<T> = fn(src: &[T], dst: &mut [MaybeUninit<f32>]) -> bool;

/// The kernels of one instruction set, for each element type.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub isa: Isa,
    pub copy_f32: CopyFn<f32>,
    pub copy_f16: CopyFn<f16>,
    pub copy_bf16: CopyFn<bf16>,
    pub planes_f32: PlanesFn<f32>,
    pub rows_f32: RowsFn<f32>,
    pub planes_bf16: PlanesFn<bf16>,
    pub rows_bf16: RowsFn<bf16>,
    pub planes_f16: PlanesFn<f16>,
    pub rows_f16: RowsFn<f16>,
    pub sum_rows_f32: SumRowsFn<f32>,
    pub sum_rows_f16: SumRowsFn<f16>,
    pub sum_rows_bf16: SumRowsFn<bf16>,
    pub sum_run_f32: SumRunFn<f32>,
    pub sum_run_f16: SumRunFn<f16>,
    pub sum_run_bf16: SumRunFn<bf16>,
    pub transpose_f32: TransposeFn<f32>,
    pub transpose_f16: TransposeFn<f16>,
    pub transpose_bf16: TransposeFn<bf16>,
}

/// `dst[ch * hw + p] = src[p * c + ch]` for every channel `ch < c` and pixel `p < hw`, widened
/// to f32; every element of `dst` (`c × hw` long) is written. Returns `false` when the values
/// may include NaN or infinities.
pub(crate) type TransposeFn<T> = fn(src: &[T], c: usize, hw: usize, dst: &mut [MaybeUninit<f32>]) -> bool;
