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

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod generic;
#[cfg(target_arch = "x86_64")]
mod half_bits;
#[cfg(not(target_arch = "x86_64"))]
mod portable;
mod set;
mod simd;
#[cfg(target_arch = "x86_64")]
mod sse2;
mod sums;
#[cfg(test)]
mod tests;
mod transpose;

use half::{bf16, f16};

use super::table::{Isa, Kernels};
use set::kernel_set;

// Each instruction set's table: its register type (`Simd`, in its own file), the generic
// kernels (`generic.rs`), its half-precision kernels (`widened` or `half_bits`) and transposes.
#[cfg(target_arch = "x86_64")]
kernel_set!(BASELINE, Isa::Baseline, sse2::Sse, "sse2", widened, portable);
#[cfg(target_arch = "x86_64")]
kernel_set!(AVX2, Isa::Avx2, avx2::Avx2, "avx2,f16c", half_bits, avx2);
#[cfg(target_arch = "x86_64")]
kernel_set!(AVX512, Isa::Avx512, avx512::Avx512, "avx512f,avx512bw,avx2,f16c", half_bits, avx2);
#[cfg(not(target_arch = "x86_64"))]
kernel_set!(BASELINE, Isa::Baseline, portable::Lanes, "", widened, portable);

/// The kernels for `isa`, or `None` where this CPU lacks it.
pub(crate) fn for_isa(isa: Isa) -> Option<Kernels> {
    if !isa.is_available() {
        return None;
    }
    Some(match isa {
        Isa::Baseline => BASELINE,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => AVX2,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => AVX512,
        #[cfg(not(target_arch = "x86_64"))]
        _ => return None,
    })
}

/// The kernels that widen every element to f32 in registers (all of f32's, and f16's and
/// bf16's where the ISA lacks 16-bit integer max and min), under the names the half-bits
/// kernels (`half_bits`) have, so that `kernel_set!` can take either.
mod widened {
    pub(super) use super::generic::{planes, rows};
}
