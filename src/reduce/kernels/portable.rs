//! Kernels for targets other than x86-64: plain arrays of four lanes, which the compiler maps
//! onto the target's vectors as it can.

use half::{bf16, f16};

use super::simd::{f16_bits_to_f32, Simd};

pub(super) struct Lanes;
impl Simd for Lanes {
    type V = [f32; 4];
    const W: usize = 4;
    unsafe fn splat(x: f32) -> [f32; 4] {
        // SAFETY: `Simd` contract: the caller vouched for W elements at the pointer.
        unsafe { [x; 4] }
    }
    unsafe fn load_f32(p: *const f32) -> [f32; 4] {
        // SAFETY: `Simd` contract: the caller vouched for W elements at the pointer.
        unsafe { std::ptr::read_unaligned(p as *const [f32; 4]) }
    }
    unsafe fn load_bf16(p: *const u16) -> [f32; 4] {
        // SAFETY: `Simd` contract: the caller vouched for W elements at the pointer.
        unsafe {
            let h = unsafe { std::ptr::read_unaligned(p as *const [u16; 4]) };
            h.map(|b| f32::from_bits((b as u32) << 16))
        }
    }
    unsafe fn load_f16(p: *const u16) -> [f32; 4] {
        // SAFETY: `Simd` contract: the caller vouched for W elements at the pointer.
        unsafe {
            let h = unsafe { std::ptr::read_unaligned(p as *const [u16; 4]) };
            h.map(f16_bits_to_f32)
        }
    }
    unsafe fn store(p: *mut f32, v: [f32; 4]) {
        // SAFETY: `Simd` contract: the caller vouched for W elements at the pointer.
        unsafe { std::ptr::write_unaligned(p as *mut [f32; 4], v) }
    }
    unsafe fn max(x: [f32; 4], m: [f32; 4]) -> [f32; 4] {
        // SAFETY: `Simd` contract: the caller vouched for W elements at the pointer.
        unsafe { std::array::from_fn(|i| if x[i] > m[i] { x[i] } else { m[i] }) }
    }
    unsafe fn add(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
        // SAFETY: `Simd` contract: the caller vouched for W elements at the pointer.
        unsafe { std::array::from_fn(|i| a[i] + b[i]) }
    }
}
