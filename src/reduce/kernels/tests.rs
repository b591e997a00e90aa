//! Every kernel of every instruction set this CPU has, against plain reference code.

use std::mem::MaybeUninit;

use half::{bf16, f16};

use super::simd::f16_bits_to_f32;
use crate::reduce::table::Isa;

fn reference_planes(src: &[f32], hw: usize) -> Vec<f32> {
    src.chunks(hw).map(|p| p.iter().cloned().fold(f32::NEG_INFINITY, f32::max)).collect()
}

fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
        })
        .collect()
}

const SIZES: [(usize, usize); 12] =
    [(1, 1), (3, 5), (7, 8), (5, 9), (64, 49), (13, 31), (9, 33), (4, 3136), (70, 17), (130, 70), (3, 300), (200, 3)];

fn transpose(src: &[f32], c: usize, hw: usize) -> Vec<f32> {
    let mut rows = vec![0f32; c * hw];
    for ch in 0..c {
        for p in 0..hw {
            rows[p * c + ch] = src[ch * hw + p];
        }
    }
    rows
}

#[test]
fn every_isa_and_dtype_matches_the_reference_on_awkward_sizes() {
    for isa in Isa::available() {
        let k = super::for_isa(isa).unwrap();
        for &(c, hw) in &SIZES {
            let src = pseudo_random(c * hw, (c * 1000 + hw) as u64);
            let rows = transpose(&src, c, hw);
            let expected = reference_planes(&src, hw);
            let run = |f: &dyn Fn(&mut [f32]) -> bool| {
                let mut acc = vec![f32::NEG_INFINITY; c];
                assert!(f(&mut acc));
                acc
            };
            assert_eq!(run(&|a| (k.planes_f32)(&src, hw, a, true)), expected, "{isa:?} planes f32 c={c} hw={hw}");
            assert_eq!(run(&|a| (k.rows_f32)(&rows, a, true)), expected, "{isa:?} rows f32 c={c} hw={hw}");

            let h: Vec<f16> = src.iter().map(|&x| f16::from_f32(x)).collect();
            let hr: Vec<f16> = rows.iter().map(|&x| f16::from_f32(x)).collect();
            let widened: Vec<f32> = h.iter().map(|x| x.to_f32()).collect();
            let expected = reference_planes(&widened, hw);
            assert_eq!(run(&|a| (k.planes_f16)(&h, hw, a, true)), expected, "{isa:?} planes f16 c={c} hw={hw}");
            assert_eq!(run(&|a| (k.rows_f16)(&hr, a, true)), expected, "{isa:?} rows f16 c={c} hw={hw}");

            let b: Vec<bf16> = src.iter().map(|&x| bf16::from_f32(x)).collect();
            let br: Vec<bf16> = rows.iter().map(|&x| bf16::from_f32(x)).collect();
            let widened: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
            let expected = reference_planes(&widened, hw);
            assert_eq!(run(&|a| (k.planes_bf16)(&b, hw, a, true)), expected, "{isa:?} planes bf16 c={c} hw={hw}");
            assert_eq!(run(&|a| (k.rows_bf16)(&br, a, true)), expected, "{isa:?} rows bf16 c={c} hw={hw}");
        }
    }
}

/// Any finite bit patterns (both zeros, subnormals, the largest values, channels all negative)
/// through the f16 and bf16 kernels, which compare bits instead of widening (half_bits.rs).
#[test]
fn half_kernels_take_any_finite_bits() {
    fn bits(n: usize, seed: u64, finite: impl Fn(u16) -> bool, negative_only: bool) -> Vec<u16> {
        let mut x = seed;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let b = (x >> 48) as u16 | if negative_only { 0x8000 } else { 0 };
            if finite(b) {
                out.push(b);
            }
        }
        out
    }
    for isa in Isa::available() {
        let k = super::for_isa(isa).unwrap();
        // The baseline widens and checks finiteness with a sum, which values this large can
        // overflow (a hint its caller confirms); the half-bits kernels' check is exact.
        let exact = isa != Isa::Baseline;
        for &(c, hw) in &SIZES {
            for negative_only in [false, true] {
                let seed = (c * 1000 + hw) as u64 + negative_only as u64;
                let h: Vec<f16> = bits(c * hw, seed, |b| f16::from_bits(b).is_finite(), negative_only)
                    .into_iter()
                    .map(f16::from_bits)
                    .collect();
                let widened: Vec<f32> = h.iter().map(|x| x.to_f32()).collect();
                let expected = reference_planes(&widened, hw);
                let rows: Vec<f16> = transpose(&widened, c, hw).into_iter().map(f16::from_f32).collect();
                let mut acc = vec![f32::NEG_INFINITY; c];
                assert!((k.planes_f16)(&h, hw, &mut acc, true) || !exact, "{isa:?} planes f16 c={c} hw={hw}");
                assert_eq!(acc, expected, "{isa:?} planes f16 c={c} hw={hw} negative_only={negative_only}");
                let mut acc = vec![f32::NEG_INFINITY; c];
                assert!((k.rows_f16)(&rows, &mut acc, true) || !exact, "{isa:?} rows f16 c={c} hw={hw}");
                assert_eq!(acc, expected, "{isa:?} rows f16 c={c} hw={hw} negative_only={negative_only}");

                let b: Vec<bf16> = bits(c * hw, seed, |b| bf16::from_bits(b).is_finite(), negative_only)
                    .into_iter()
                    .map(bf16::from_bits)
                    .collect();
                let widened: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
                let expected = reference_planes(&widened, hw);
                let rows: Vec<bf16> = transpose(&widened, c, hw).into_iter().map(bf16::from_f32).collect();
                let mut acc = vec![f32::NEG_INFINITY; c];
                assert!((k.planes_bf16)(&b, hw, &mut acc, true) || !exact, "{isa:?} planes bf16 c={c} hw={hw}");
                assert_eq!(acc, expected, "{isa:?} planes bf16 c={c} hw={hw} negative_only={negative_only}");
                let mut acc = vec![f32::NEG_INFINITY; c];
                assert!((k.rows_bf16)(&rows, &mut acc, true) || !exact, "{isa:?} rows bf16 c={c} hw={hw}");
                assert_eq!(acc, expected, "{isa:?} rows bf16 c={c} hw={hw} negative_only={negative_only}");
            }
        }
    }
}

#[test]
fn copies_widen_exactly_and_write_every_element_for_every_isa() {
    let h: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let b: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    for isa in Isa::available() {
        let k = super::for_isa(isa).unwrap();
        // Every length up to a few blocks, so that each tail is taken; NaN-filled first, so a
        // skipped element shows.
        for len in (0..70).chain([1001, 65536]) {
            let mut out = vec![MaybeUninit::new(f32::NAN); len];
            let finite = (k.copy_f16)(&h[..len], &mut out);
            let mut all_finite = true;
            for (x, y) in h[..len].iter().zip(&out) {
                // SAFETY: every element was initialised with NaN above.
                let y = unsafe { y.assume_init() };
                assert!(x.to_f32().to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()), "{isa:?} f16 {x:?}");
                all_finite &= x.is_finite();
            }
            assert!(finite || !all_finite, "{isa:?} f16 len {len}: finite values flagged");
            let mut out = vec![MaybeUninit::new(f32::NAN); len];
            (k.copy_bf16)(&b[..len], &mut out);
            for (x, y) in b[..len].iter().zip(&out) {
                // SAFETY: as above.
                let y = unsafe { y.assume_init() };
                assert!(x.to_f32().to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()), "{isa:?} bf16 {x:?}");
            }
            let f: Vec<f32> = pseudo_random(len, len as u64);
            let mut out = vec![MaybeUninit::new(f32::NAN); len];
            assert!((k.copy_f32)(&f, &mut out), "{isa:?} f32 len {len}: finite values flagged");
            for (x, y) in f.iter().zip(&out) {
                // SAFETY: as above.
                let y = unsafe { y.assume_init() };
                assert_eq!(x.to_bits(), y.to_bits(), "{isa:?} f32 len {len}");
            }
            if len > 0 {
                let mut bad = f.clone();
                bad[len - 1] = f32::INFINITY;
                assert!(!(k.copy_f32)(&bad, &mut out), "{isa:?} f32 len {len}: infinity not flagged");
            }
        }
    }
}

#[test]
fn software_f16_widening_is_exact_for_every_value() {
    for bits in 0..=u16::MAX {
        let h = f16::from_bits(bits);
        let (ours, theirs) = (f16_bits_to_f32(bits), h.to_f32());
        assert!(ours.to_bits() == theirs.to_bits() || (ours.is_nan() && theirs.is_nan()), "{bits:#06x}");
    }
}

#[test]
fn non_finite_values_are_flagged_wherever_they_sit() {
    for isa in Isa::available() {
        let k = super::for_isa(isa).unwrap();
        for &(c, hw) in &[(3, 5), (64, 49), (70, 17), (2, 100), (4, 3136), (130, 9)] {
            for bad in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for pos in [0, c * hw / 2, c * hw - 1] {
                    let mut src = pseudo_random(c * hw, 7);
                    src[pos] = bad;
                    let mut acc = vec![f32::NEG_INFINITY; c];
                    assert!(!(k.planes_f32)(&src, hw, &mut acc, true), "{isa:?} planes {bad} at {pos}");
                    let mut acc = vec![f32::NEG_INFINITY; c];
                    assert!(!(k.rows_f32)(&src, &mut acc, true), "{isa:?} rows {bad} at {pos}");
                    let h: Vec<f16> = src.iter().map(|&x| f16::from_f32(x)).collect();
                    let mut acc = vec![f32::NEG_INFINITY; c];
                    assert!(!(k.planes_f16)(&h, hw, &mut acc, true), "{isa:?} planes f16 {bad} at {pos}");
                    let mut acc = vec![f32::NEG_INFINITY; c];
                    assert!(!(k.rows_f16)(&h, &mut acc, true), "{isa:?} rows f16 {bad} at {pos}");
                    let b: Vec<bf16> = src.iter().map(|&x| bf16::from_f32(x)).collect();
                    let mut acc = vec![f32::NEG_INFINITY; c];
                    assert!(!(k.rows_bf16)(&b, &mut acc, true), "{isa:?} rows bf16 {bad} at {pos}");
                    let mut acc = vec![f32::NEG_INFINITY; c];
                    assert!(!(k.planes_bf16)(&b, hw, &mut acc, true), "{isa:?} planes bf16 {bad} at {pos}");
                }
            }
        }
    }
}
