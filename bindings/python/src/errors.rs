//! The library's errors as Python exceptions: one class per status, all under `MintError`,
//! each instance carrying `status` (the C ABI's name, e.g. `MINT_ERR_QUEUE_FULL`) and `message`.

use mint_audit::{Error, ErrorKind};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(mint_audit, MintError, PyException, "Any error of mint-audit; `status` names it as the C API does.");
create_exception!(
    mint_audit,
    InvalidConfigError,
    MintError,
    "A configuration field is missing, unknown or out of range."
);
create_exception!(
    mint_audit,
    HeadDigestMismatchError,
    MintError,
    "The head file's sha256 differs from the configured one."
);
create_exception!(mint_audit, HeadLoadError, MintError, "The head ONNX could not be read, parsed or compiled.");
create_exception!(
    mint_audit,
    InvalidInputError,
    MintError,
    "A tensor's dtype, rank, shape, strides or device is wrong; the batch was dropped and counted."
);
create_exception!(
    mint_audit,
    NonFiniteError,
    MintError,
    "Some samples carried NaN or infinite values and were dropped; the others were accepted."
);
create_exception!(
    mint_audit,
    QueueFullError,
    MintError,
    "The queue to the workers was full: the batch was dropped and counted."
);
create_exception!(
    mint_audit,
    OverBudgetError,
    MintError,
    "The CNN path's copy budget was exhausted: the batch was dropped and counted."
);
create_exception!(mint_audit, ClosedError, MintError, "The auditor is closed and accepts no more samples.");
create_exception!(mint_audit, BackendError, MintError, "A backend could not be loaded, or refused a call.");
create_exception!(mint_audit, FileError, MintError, "A file could not be read or written.");
create_exception!(mint_audit, BufferTooSmallError, MintError, "A caller-provided buffer is too small.");
create_exception!(
    mint_audit,
    ReentrantError,
    MintError,
    "Called from the auditor's own result callback, where it cannot be done."
);

/// The exception for a library error, with its status name and message.
pub(crate) fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    Python::attach(|py| {
        let (status, class) = match error.kind() {
            ErrorKind::InvalidConfig => ("MINT_ERR_INVALID_CONFIG", py.get_type::<InvalidConfigError>()),
            ErrorKind::HeadDigestMismatch => {
                ("MINT_ERR_HEAD_DIGEST_MISMATCH", py.get_type::<HeadDigestMismatchError>())
            }
            ErrorKind::HeadLoad => ("MINT_ERR_HEAD_LOAD", py.get_type::<HeadLoadError>()),
            ErrorKind::InvalidInput => ("MINT_ERR_INVALID_INPUT", py.get_type::<InvalidInputError>()),
            ErrorKind::NonFinite => ("MINT_ERR_NON_FINITE", py.get_type::<NonFiniteError>()),
            ErrorKind::QueueFull => ("MINT_ERR_QUEUE_FULL", py.get_type::<QueueFullError>()),
            ErrorKind::OverBudget => ("MINT_ERR_OVER_BUDGET", py.get_type::<OverBudgetError>()),
            ErrorKind::Closed => ("MINT_ERR_CLOSED", py.get_type::<ClosedError>()),
            ErrorKind::Backend => ("MINT_ERR_BACKEND", py.get_type::<BackendError>()),
            ErrorKind::Io => ("MINT_ERR_IO", py.get_type::<FileError>()),
            ErrorKind::BufferTooSmall => ("MINT_ERR_BUFFER_TOO_SMALL", py.get_type::<BufferTooSmallError>()),
            ErrorKind::Reentrant => ("MINT_ERR_REENTRANT", py.get_type::<ReentrantError>()),
        };
        let err = PyErr::from_type(class, message.clone());
        let value = err.value(py);
        // Attributes on a fresh exception instance cannot fail but for memory exhaustion, in
        // which case the exception still says what went wrong in its text.
        let _ = value.setattr("status", status);
        let _ = value.setattr("message", message);
        err
    })
}

/// A tensor the binding could not read, as `InvalidInputError`.
pub(crate) fn invalid_input(message: String) -> PyErr {
    to_py(Error::InvalidInput(message))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MintError", py.get_type::<MintError>())?;
    m.add("InvalidConfigError", py.get_type::<InvalidConfigError>())?;
    m.add("HeadDigestMismatchError", py.get_type::<HeadDigestMismatchError>())?;
    m.add("HeadLoadError", py.get_type::<HeadLoadError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("NonFiniteError", py.get_type::<NonFiniteError>())?;
    m.add("QueueFullError", py.get_type::<QueueFullError>())?;
    m.add("OverBudgetError", py.get_type::<OverBudgetError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("BackendError", py.get_type::<BackendError>())?;
    m.add("FileError", py.get_type::<FileError>())?;
    m.add("BufferTooSmallError", py.get_type::<BufferTooSmallError>())?;
    m.add("ReentrantError", py.get_type::<ReentrantError>())?;
    Ok(())
}
