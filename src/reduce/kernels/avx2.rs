//! The kernels for AVX2 with F16C (Haswell, Zen 1 and later).

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::{kernel_set, Simd};
use crate::reduce::dispatch::{Isa, Kernels};

pub(super) struct Avx2;
impl Simd for Avx2 {
    type V = __m256;
    const W: usize = 8;
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        // SAFETY: `Simd` contract: AVX2 + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load_f32(p: *const f32) -> __m256 {
        // SAFETY: `Simd` contract: AVX2 + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m256 {
        // SAFETY: `Simd` contract: AVX2 + F16C are enabled here, and the caller vouched for W elements.
        unsafe {
            let h = _mm_loadu_si128(p as *const __m128i);
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> __m256 {
        // SAFETY: `Simd` contract: AVX2 + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        // SAFETY: `Simd` contract: AVX2 + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn max(x: __m256, m: __m256) -> __m256 {
        // SAFETY: `Simd` contract: AVX2 + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm256_max_ps(x, m) }
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        // SAFETY: `Simd` contract: AVX2 + F16C are enabled here, and the caller vouched for W elements.
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn hmax(v: __m256) -> f32 {
        // SAFETY: `Simd` contract: AVX2 + F16C are enabled here, and the caller vouched for W elements.
        unsafe {
            let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
            _mm_cvtss_f32(m)
        }
    }
}

kernel_set!(AVX2, Isa::Avx2, Avx2, "avx2,f16c");
