//! `kernel_set!`: one instruction set's table of kernels (`table::Kernels`), the generic
//! kernels of `generic.rs` wrapped in safe `#[target_feature]` functions.

/// Wraps the generic kernels for one ISA into safe functions with `#[target_feature]`.
/// `$halves` names the module of the f16 and bf16 kernels: `widened` (any ISA) or `half_bits`
/// (the ISA has 16-bit integer max and min, see `half_bits.rs`); `$transposes` the module of
/// `transpose.rs` whose channels-last transposes this ISA's table carries.
macro_rules! kernel_set {
    ($name:ident, $isa:expr, $simd:ty, $features:literal, $halves:ident, $transposes:ident) => {
        // The module takes the table's name (modules and constants live apart), so that
        // `kernels/mod.rs` can invoke this once per instruction set.
        #[allow(non_snake_case)]
        mod $name {
            use super::*;
            use std::mem::MaybeUninit;

            use $crate::reduce::kernels::generic::copy;
            use $crate::reduce::kernels::sums::{sum_rows, sum_run};

            // `$module`: `widened` or `half_bits`, whose `planes` and `rows` have one signature.
            macro_rules! planes_fn {
                ($fname:ident, $elem:ty, $module:ident) => {
                    fn $fname(src: &[$elem], hw: usize, acc: &mut [f32], check: bool) -> bool {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem], hw: usize, acc: &mut [f32], check: bool) -> bool {
                            use $crate::reduce::kernels::$module::planes;
                            // SAFETY: this function runs with the features it was compiled for, which `inner`'s callee needs.
                            unsafe {
                                if check {
                                    planes::<$simd, $elem, true>(src, hw, acc)
                                } else {
                                    planes::<$simd, $elem, false>(src, hw, acc)
                                }
                            }
                        }
                        // SAFETY: `Kernels::for_isa` hands these kernels out only after
                        // `Isa::is_available` confirmed every feature they were compiled for
                        // (the tuned table of `Kernels::best` takes its kernels from there).
                        unsafe { inner(src, hw, acc, check) }
                    }
                };
            }
            macro_rules! rows_fn {
                ($fname:ident, $elem:ty, $module:ident) => {
                    fn $fname(src: &[$elem], acc: &mut [f32], check: bool) -> bool {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem], acc: &mut [f32], check: bool) -> bool {
                            use $crate::reduce::kernels::$module::rows;
                            // SAFETY: as for `planes_fn`.
                            unsafe {
                                if check {
                                    rows::<$simd, $elem, true>(src, acc)
                                } else {
                                    rows::<$simd, $elem, false>(src, acc)
                                }
                            }
                        }
                        // SAFETY: as for `planes_fn`.
                        unsafe { inner(src, acc, check) }
                    }
                };
            }
            macro_rules! copy_fn {
                ($fname:ident, $elem:ty) => {
                    fn $fname(src: &[$elem], dst: &mut [MaybeUninit<f32>]) -> bool {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem], dst: &mut [MaybeUninit<f32>]) -> bool {
                            // SAFETY: as for `planes_fn`.
                            unsafe { copy::<$simd, $elem>(src, dst) }
                        }
                        // SAFETY: as for `planes_fn`.
                        unsafe { inner(src, dst) }
                    }
                };
            }
            macro_rules! sum_fns {
                ($rows:ident, $run:ident, $elem:ty) => {
                    fn $rows(src: &[$elem], acc: &mut [f32]) {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem], acc: &mut [f32]) {
                            // SAFETY: as for `planes_fn`.
                            unsafe { sum_rows::<$simd, $elem>(src, acc) }
                        }
                        // SAFETY: as for `planes_fn`.
                        unsafe { inner(src, acc) }
                    }
                    fn $run(src: &[$elem]) -> f32 {
                        #[target_feature(enable = $features)]
                        unsafe fn inner(src: &[$elem]) -> f32 {
                            // SAFETY: as for `planes_fn`.
                            unsafe { sum_run::<$simd, $elem>(src) }
                        }
                        // SAFETY: as for `planes_fn`.
                        unsafe { inner(src) }
                    }
                };
            }
            sum_fns!(sum_rows_f32, sum_run_f32, f32);
            sum_fns!(sum_rows_f16, sum_run_f16, f16);
            sum_fns!(sum_rows_bf16, sum_run_bf16, bf16);
            copy_fn!(copy_f32, f32);
            copy_fn!(copy_f16, f16);
            copy_fn!(copy_bf16, bf16);
            planes_fn!(planes_f32, f32, widened);
            rows_fn!(rows_f32, f32, widened);
            planes_fn!(planes_bf16, bf16, $halves);
            rows_fn!(rows_bf16, bf16, $halves);
            planes_fn!(planes_f16, f16, $halves);
            rows_fn!(rows_f16, f16, $halves);

            pub(crate) const KERNELS: Kernels = Kernels {
                isa: $isa,
                copy_f32,
                copy_f16,
                copy_bf16,
                planes_f32,
                rows_f32,
                planes_bf16,
                rows_bf16,
                planes_f16,
                rows_f16,
                sum_rows_f32,
                sum_rows_f16,
                sum_rows_bf16,
                sum_run_f32,
                sum_run_f16,
                sum_run_bf16,
                transpose_f32: $crate::reduce::kernels::transpose::$transposes::f32,
                transpose_f16: $crate::reduce::kernels::transpose::$transposes::f16,
                transpose_bf16: $crate::reduce::kernels::transpose::$transposes::bf16,
            };
        }
        /// This instruction set's kernels.
        pub(crate) const $name: Kernels = $name::KERNELS;
    };
}
pub(super) use kernel_set;
