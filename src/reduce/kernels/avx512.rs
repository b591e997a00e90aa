//! The kernels for AVX-512F with F16C (Skylake-SP, Zen 4 and later).

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::{kernel_set, Simd};
use crate::reduce::dispatch::{Isa, Kernels};

pub(super) struct Avx512;
impl Simd for Avx512 {
    type V = __m512;
    const W: usize = 16;
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        // SAFETY: `Simd` contract: AVX512F + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load_f32(p: *const f32) -> __m512 {
        // SAFETY: `Simd` contract: AVX512F + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m512 {
        // SAFETY: `Simd` contract: AVX512F + F16C are enabled here, and the caller vouched for W elements.
        unsafe {
            let h = _mm256_loadu_si256(p as *const __m256i);
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> __m512 {
        // SAFETY: `Simd` contract: AVX512F + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        // SAFETY: `Simd` contract: AVX512F + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn max(x: __m512, m: __m512) -> __m512 {
        // SAFETY: `Simd` contract: AVX512F + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm512_max_ps(x, m) }
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        // SAFETY: `Simd` contract: AVX512F + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn hmax(v: __m512) -> f32 {
        // SAFETY: `Simd` contract: AVX512F + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm512_reduce_max_ps(v) }
    }
}

kernel_set!(AVX512, Isa::Avx512, Avx512, "avx512f,f16c");
