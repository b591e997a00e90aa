//! The kernels for SSE2, the x86-64 baseline: every x86-64 CPU has it.

use std::arch::x86_64::*;

use super::simd::{f16_bits_to_f32, Simd};

pub(super) struct Sse;
impl Simd for Sse {
    type V = __m128;
    const W: usize = 4;
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m128 {
        // SAFETY: `Simd` contract: SSE2 is enabled here, and the caller vouched for W elements.
        unsafe { _mm_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load_f32(p: *const f32) -> __m128 {
        // SAFETY: `Simd` contract: SSE2 is enabled here, and the caller vouched for W elements.
        unsafe { _mm_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m128 {
        // SAFETY: `Simd` contract: SSE2 is enabled here, and the caller vouched for W elements.
        unsafe {
            let h = _mm_loadl_epi64(p as *const __m128i);
            _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), h))
        }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> __m128 {
        // SAFETY: `Simd` contract: the caller vouched for W = 4 elements at `p`.
        let h = unsafe { std::slice::from_raw_parts(p, 4) };
        // SAFETY: `Simd` contract: SSE2 is enabled here.
        unsafe {
            _mm_setr_ps(f16_bits_to_f32(h[0]), f16_bits_to_f32(h[1]), f16_bits_to_f32(h[2]), f16_bits_to_f32(h[3]))
        }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m128) {
        // SAFETY: `Simd` contract: SSE2 is enabled here, and the caller vouched for W elements.
        unsafe { _mm_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn max(x: __m128, m: __m128) -> __m128 {
        // SAFETY: `Simd` contract: SSE2 is enabled here, and the caller vouched for W elements.
        unsafe { _mm_max_ps(x, m) }
    }
    #[inline(always)]
    unsafe fn add(a: __m128, b: __m128) -> __m128 {
        // SAFETY: `Simd` contract: SSE2 is enabled here, and the caller vouched for W elements.
        unsafe { _mm_add_ps(a, b) }
    }
}
