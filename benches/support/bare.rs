//! The bare scans the reduction benches compare with (included with `#[path]`): one flat max
//! over a slice, knowing nothing of channels, in portable form and hand-written with AVX2 and
//! AVX-512 intrinsics.

#![allow(dead_code)]

/// A flat max over one slice.
pub type Flat = fn(&[f32]) -> f32;

/// Every bare scan this CPU can run, by name.
pub fn scans() -> Vec<(&'static str, Flat)> {
    let mut scans: Vec<(&str, Flat)> = vec![("portable", bare_portable)];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: this CPU has AVX2 (checked above).
            scans.push(("avx2 intrinsics", |m| unsafe { bare_avx2(m) }));
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: this CPU has AVX-512F (checked above).
            scans.push(("avx512 intrinsics", |m| unsafe { bare_avx512(m) }));
        }
    }
    scans
}

fn bare_portable(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 32];
    let mut chunks = x.chunks_exact(32);
    for c in &mut chunks {
        for i in 0..32 {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let tail = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    acc.iter().copied().fold(tail, f32::max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bare_avx2(x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut a = [_mm256_set1_ps(f32::NEG_INFINITY); 8];
    let blocks = x.len() / 64;
    let p = x.as_ptr();
    for b in 0..blocks {
        for (k, acc) in a.iter_mut().enumerate() {
            // SAFETY: block `b < blocks` lies inside `x` (64 floats per block).
            *acc = _mm256_max_ps(*acc, unsafe { _mm256_loadu_ps(p.add(b * 64 + k * 8)) });
        }
    }
    let mut m = a[0];
    for acc in &a[1..] {
        m = _mm256_max_ps(m, *acc);
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds the 8 floats stored.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
    x[blocks * 64..].iter().copied().chain(lanes).fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn bare_avx512(x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut a = [_mm512_set1_ps(f32::NEG_INFINITY); 8];
    let blocks = x.len() / 128;
    let p = x.as_ptr();
    for b in 0..blocks {
        for (k, acc) in a.iter_mut().enumerate() {
            // SAFETY: block `b < blocks` lies inside `x` (128 floats per block).
            *acc = _mm512_max_ps(*acc, unsafe { _mm512_loadu_ps(p.add(b * 128 + k * 16)) });
        }
    }
    let mut m = a[0];
    for acc in &a[1..] {
        m = _mm512_max_ps(m, *acc);
    }
    let tail = x[blocks * 128..].iter().copied().fold(f32::NEG_INFINITY, f32::max);
    _mm512_reduce_max_ps(m).max(tail)
}
