//! Which kernels run: the best instruction set this CPU has, each reduction's kernel the
//! fastest measured at first use (`tune`), chosen once per process.

use super::table::Kernels;
use super::tune::{self, Picks};

/// The kernels this process uses: the best ISA's, with each reduction the fastest measured at
/// first use (see `tune.rs`). Every kernel comes from `kernels::for_isa`, so from an ISA this
/// CPU has.
pub(crate) fn best() -> &'static Kernels {
    &tuned().0
}

/// The ISA each reduction of [`best`] runs on.
pub(crate) fn picks() -> &'static Picks {
    &tuned().1
}

fn tuned() -> &'static (Kernels, Picks) {
    static TUNED: std::sync::OnceLock<(Kernels, Picks)> = std::sync::OnceLock::new();
    TUNED.get_or_init(tune::tuned)
}
