//! The kernels for AVX-512F and AVX-512BW with F16C (Skylake-SP, Zen 4 and later).

use std::arch::x86_64::*;

use super::avx2::{hmax_i16_128, hmax_u16_128, hmin_i16_128};
use super::half_bits::Lanes16;
use super::simd::Simd;

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
    #[inline(always)]
    unsafe fn hmax4([a, b, c, d]: [__m512; 4]) -> [f32; 4] {
        // SAFETY: `Simd` contract: AVX512F is enabled here; register shuffles only.
        unsafe {
            // 128-bit lanes: [a0 a1 b0 b1] against [a2 a3 b2 b3], then [A0 B0 C0 D0] against
            // [A1 B1 C1 D1]: one lane of four partial maxima per register; then within lanes.
            let ab = _mm512_max_ps(_mm512_shuffle_f32x4::<0x44>(a, b), _mm512_shuffle_f32x4::<0xEE>(a, b));
            let cd = _mm512_max_ps(_mm512_shuffle_f32x4::<0x44>(c, d), _mm512_shuffle_f32x4::<0xEE>(c, d));
            let v = _mm512_max_ps(_mm512_shuffle_f32x4::<0x88>(ab, cd), _mm512_shuffle_f32x4::<0xDD>(ab, cd));
            let v = _mm512_max_ps(v, _mm512_permute_ps::<0x4E>(v));
            let v = _mm512_max_ps(v, _mm512_permute_ps::<0xB1>(v));
            let mut lanes = [0f32; 16];
            _mm512_storeu_ps(lanes.as_mut_ptr(), v);
            [lanes[0], lanes[4], lanes[8], lanes[12]]
        }
    }
}

impl Lanes16 for Avx512 {
    type I = __m512i;
    const L: usize = 32;
    #[inline(always)]
    unsafe fn splat16(x: u16) -> __m512i {
        // SAFETY: `Lanes16` contract: AVX-512BW is enabled here.
        unsafe { _mm512_set1_epi16(x as i16) }
    }
    #[inline(always)]
    unsafe fn load16(p: *const u16) -> __m512i {
        // SAFETY: `Lanes16` contract: AVX-512F is enabled here, and the caller vouched for L elements.
        unsafe { _mm512_loadu_si512(p as *const __m512i) }
    }
    #[inline(always)]
    unsafe fn max_i16(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: `Lanes16` contract: AVX-512BW is enabled here.
        unsafe { _mm512_max_epi16(a, b) }
    }
    #[inline(always)]
    unsafe fn min_i16(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: `Lanes16` contract: AVX-512BW is enabled here.
        unsafe { _mm512_min_epi16(a, b) }
    }
    #[inline(always)]
    unsafe fn max_u16(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: `Lanes16` contract: AVX-512BW is enabled here.
        unsafe { _mm512_max_epu16(a, b) }
    }
    #[inline(always)]
    unsafe fn hmax_i16(v: __m512i) -> i16 {
        // SAFETY: `Lanes16` contract: AVX-512F and AVX2 (so SSE4.1) are enabled here.
        unsafe {
            let m = _mm256_max_epi16(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
            hmax_i16_128(_mm_max_epi16(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m)))
        }
    }
    #[inline(always)]
    unsafe fn hmin_i16(v: __m512i) -> i16 {
        // SAFETY: `Lanes16` contract: AVX-512F and AVX2 (so SSE4.1) are enabled here.
        unsafe {
            let m = _mm256_min_epi16(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
            hmin_i16_128(_mm_min_epi16(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m)))
        }
    }
    #[inline(always)]
    unsafe fn hmax_u16(v: __m512i) -> u16 {
        // SAFETY: `Lanes16` contract: AVX-512F and AVX2 (so SSE4.1) are enabled here.
        unsafe {
            let m = _mm256_max_epu16(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
            hmax_u16_128(_mm_max_epu16(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m)))
        }
    }
    #[inline(always)]
    unsafe fn store16(p: *mut u16, v: __m512i) {
        // SAFETY: `Lanes16` contract: AVX-512F is enabled here, and the caller vouched for L elements.
        unsafe { _mm512_storeu_si512(p as *mut __m512i, v) }
    }
}
