//! `mint_audit._native`: the Python face of mint-audit, over the Rust API.
//!
//! The path of a sample from Python: `tensors` reads each tap from a numpy array or a torch
//! tensor in place (the array interface or DLPack) into a [`mint_audit::TensorView`];
//! `batch` reads one call's taps and token selection, `auditor` hands the views to the
//! library with the GIL released (`features` gives the rows it would build, for experiments); results come back to a
//! Python callable on the library's worker threads, which take the GIL for it (`sink`);
//! `errors` turns the library's errors into exceptions named after the C status codes.

mod auditor;
mod batch;
mod errors;
mod features;
mod reports;
mod sink;
mod tensors;

use pyo3::prelude::*;

/// mint-audit's native module. Use the `mint_audit` package, which re-exports it.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The wheel is one object: the backends are linked in and answer to the plugin file
    // names that configurations written for C hosts give them.
    mint_audit::link_backend("libmint_backend_cpu.so", mint_backend_cpu::entry);
    mint_audit::link_backend("libmint_backend_triton.so", mint_backend_triton_core::entry);

    m.add("__version__", mint_audit::VERSION)?;
    m.add("REDUCE_ISA", mint_audit::reduce_isa())?;
    m.add("CLOSE_GRACE_S", mint_audit::CLOSE_GRACE.as_secs_f64())?;
    m.add_class::<auditor::Auditor>()?;
    m.add_function(wrap_pyfunction!(features::features, m)?)?;
    m.add_class::<reports::Stats>()?;
    m.add_class::<reports::CloseReport>()?;
    m.add_class::<reports::SubmitReport>()?;
    m.add_class::<reports::AuditResult>()?;
    errors::register(m)?;
    Ok(())
}
