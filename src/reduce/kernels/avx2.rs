//! The kernels for AVX2 with F16C (Haswell, Zen 1 and later).

use std::arch::x86_64::*;

use super::half_bits::Lanes16;
use super::simd::Simd;

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
    #[inline(always)]
    unsafe fn hmax4([a, b, c, d]: [__m256; 4]) -> [f32; 4] {
        // SAFETY: `Simd` contract: AVX2 is enabled here; register shuffles only.
        unsafe {
            // [a.lo b.lo] against [a.hi b.hi]: a 128-bit lane of four partial maxima of a, one
            // of b; then pairs of those against each other, within lanes.
            let ab = _mm256_max_ps(_mm256_permute2f128_ps::<0x20>(a, b), _mm256_permute2f128_ps::<0x31>(a, b));
            let cd = _mm256_max_ps(_mm256_permute2f128_ps::<0x20>(c, d), _mm256_permute2f128_ps::<0x31>(c, d));
            // Lane 0: [a a c c] partials, lane 1: [b b d d].
            let v = _mm256_max_ps(_mm256_shuffle_ps::<0x44>(ab, cd), _mm256_shuffle_ps::<0xEE>(ab, cd));
            let v = _mm256_max_ps(v, _mm256_permute_ps::<0xB1>(v));
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), v);
            [lanes[0], lanes[4], lanes[2], lanes[6]]
        }
    }
}

impl Lanes16 for Avx2 {
    type I = __m256i;
    const L: usize = 16;
    #[inline(always)]
    unsafe fn splat16(x: u16) -> __m256i {
        // SAFETY: `Lanes16` contract: AVX2 is enabled here.
        unsafe { _mm256_set1_epi16(x as i16) }
    }
    #[inline(always)]
    unsafe fn load16(p: *const u16) -> __m256i {
        // SAFETY: `Lanes16` contract: AVX2 is enabled here, and the caller vouched for L elements.
        unsafe { _mm256_loadu_si256(p as *const __m256i) }
    }
    #[inline(always)]
    unsafe fn max_i16(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: `Lanes16` contract: AVX2 is enabled here.
        unsafe { _mm256_max_epi16(a, b) }
    }
    #[inline(always)]
    unsafe fn min_i16(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: `Lanes16` contract: AVX2 is enabled here.
        unsafe { _mm256_min_epi16(a, b) }
    }
    #[inline(always)]
    unsafe fn max_u16(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: `Lanes16` contract: AVX2 is enabled here.
        unsafe { _mm256_max_epu16(a, b) }
    }
    #[inline(always)]
    unsafe fn hmax_i16(v: __m256i) -> i16 {
        // SAFETY: `Lanes16` contract: AVX2 (and so SSE4.1) is enabled here.
        unsafe { hmax_i16_128(_mm_max_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v))) }
    }
    #[inline(always)]
    unsafe fn hmin_i16(v: __m256i) -> i16 {
        // SAFETY: `Lanes16` contract: AVX2 (and so SSE4.1) is enabled here.
        unsafe { hmin_i16_128(_mm_min_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v))) }
    }
    #[inline(always)]
    unsafe fn hmax_u16(v: __m256i) -> u16 {
        // SAFETY: `Lanes16` contract: AVX2 (and so SSE4.1) is enabled here.
        unsafe { hmax_u16_128(_mm_max_epu16(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v))) }
    }
    #[inline(always)]
    unsafe fn store16(p: *mut u16, v: __m256i) {
        // SAFETY: `Lanes16` contract: AVX2 is enabled here, and the caller vouched for L elements.
        unsafe { _mm256_storeu_si256(p as *mut __m256i, v) }
    }
}

// Horizontal extremes of eight 16-bit lanes with SSE4.1's `phminposuw`, which finds the
// smallest unsigned lane: the other orders are mapped onto it by flipping bits.

/// The largest signed lane: the smallest unsigned lane of `v ^ 0x7fff`.
#[inline(always)]
pub(super) unsafe fn hmax_i16_128(v: __m128i) -> i16 {
    // SAFETY: the callers enable SSE4.1 (implied by AVX2).
    unsafe { ((_mm_cvtsi128_si32(_mm_minpos_epu16(_mm_xor_si128(v, _mm_set1_epi16(0x7fff)))) as u16) ^ 0x7fff) as i16 }
}

/// The smallest signed lane: the smallest unsigned lane of `v ^ 0x8000`.
#[inline(always)]
pub(super) unsafe fn hmin_i16_128(v: __m128i) -> i16 {
    // SAFETY: the callers enable SSE4.1 (implied by AVX2).
    unsafe {
        ((_mm_cvtsi128_si32(_mm_minpos_epu16(_mm_xor_si128(v, _mm_set1_epi16(0x8000u16 as i16)))) as u16) ^ 0x8000)
            as i16
    }
}

/// The largest unsigned lane: the smallest unsigned lane of `!v`.
#[inline(always)]
pub(super) unsafe fn hmax_u16_128(v: __m128i) -> u16 {
    // SAFETY: the callers enable SSE4.1 (implied by AVX2).
    unsafe { !(_mm_cvtsi128_si32(_mm_minpos_epu16(_mm_xor_si128(v, _mm_set1_epi16(-1)))) as u16) }
}
