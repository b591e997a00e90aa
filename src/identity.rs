//! What this library is, as reports and the `_info` metric say it: its version and the
//! instruction set its reduction kernels run on here.

use crate::reduce;

/// The library's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The instruction set the reduction kernels use on this machine (`avx512f`, `avx2` or
/// `baseline`), chosen once at run time; reports and the `_info` metric carry it.
pub fn reduce_isa() -> &'static str {
    reduce::isa().name()
}
