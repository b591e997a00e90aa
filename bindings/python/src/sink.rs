//! Results to a Python callable, on the library's worker threads.
//!
//! The worker takes the GIL for each batch of results and calls the callable with a list of
//! `AuditResult`s. Every call of the binding that waits on the workers (`close`, leaving the
//! `with` block, dropping the auditor) releases the GIL first, so a callback can always
//! finish; a callback that never returns is bounded by the library's close deadline like any
//! other result sink. A callback's exception is reported through `sys.unraisablehook` and
//! does not stop the auditor. While the interpreter shuts down, results are not delivered
//! (they are still counted in the metrics and stats).

use mint_audit::{AuditResult, ResultSink};
use pyo3::prelude::*;

use crate::reports;

pub(crate) struct PythonSink {
    pub(crate) callback: Py<PyAny>,
}

impl ResultSink for PythonSink {
    fn deliver(&self, results: &[AuditResult]) {
        let _ = Python::try_attach(|py| {
            let batch: Vec<reports::AuditResult> = results.iter().map(Into::into).collect();
            if let Err(error) = self.callback.call1(py, (batch,)) {
                error.write_unraisable(py, Some(self.callback.bind(py)));
            }
        });
    }
}
