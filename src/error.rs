//! One error type for the library, with a stable classification ([`ErrorKind`]) that the
//! C ABI maps to numeric result codes.

use std::path::PathBuf;

/// What went wrong, in a closed set that never changes meaning between releases. Exhaustive on
/// purpose: a binding maps every kind to its own code, and a new kind must make it say how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A configuration field is missing, unknown or out of range.
    InvalidConfig,
    /// The head file's sha256 differs from the configured one.
    HeadDigestMismatch,
    /// The head ONNX could not be read, parsed or compiled, or its shape does not fit the taps.
    HeadLoad,
    /// A tensor's rank, shape, channel count, strides or alignment is wrong.
    InvalidInput,
    /// Some samples carried NaN or infinite values and were dropped.
    NonFinite,
    /// The queue to the worker was full: the batch was dropped and counted.
    QueueFull,
    /// The copy budget of the CNN path was exhausted: the batch was dropped and counted.
    OverBudget,
    /// The auditor is closed and accepts no more samples.
    Closed,
    /// A backend plugin could not be loaded, or refused a call.
    Backend,
    /// A file could not be read or written.
    Io,
    /// A caller-provided buffer is too small.
    BufferTooSmall,
    /// Called from the auditor's own result callback, where it cannot be done.
    Reentrant,
}

/// The library's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration field is missing, unknown or out of range.
    #[error("invalid configuration: {field}: {message}")]
    Config {
        /// The field, as a path (`taps[2].channels`).
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// The head file's sha256 differs from the configured one.
    #[error("head file {}: sha256 is {actual}, but the configuration expects {expected}; refusing to start", path.display())]
    HeadDigestMismatch {
        /// The head file.
        path: PathBuf,
        /// The configured digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },

    /// The head (or audited model) could not be parsed, compiled or run.
    #[error("head {}: {message}", path.display())]
    HeadLoad {
        /// The ONNX file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A tensor does not fit its tap; the message names the tap.
    #[error("{0}")]
    InvalidInput(String),

    /// Some samples held NaN or infinities and were dropped; the others were accepted.
    #[error("{rejected} of {total} samples had NaN or infinite values (first: sample id {first_id}, tap '{tap}') and were dropped; the other {} were accepted", total - rejected)]
    NonFinite {
        /// Samples dropped.
        rejected: usize,
        /// Samples chosen for audit in the call.
        total: usize,
        /// The first dropped sample's id.
        first_id: u64,
        /// The tap holding its first non-finite value.
        tap: String,
    },

    /// The queue to the workers was full: the batch was dropped and counted.
    #[error("queue full ({capacity} samples): batch of {samples} samples dropped")]
    QueueFull {
        /// Samples dropped.
        samples: usize,
        /// The queue's capacity.
        capacity: usize,
    },

    /// The CNN path's copy budget was exhausted: the batch was dropped and counted.
    #[error("CNN copy budget of {budget} bytes exhausted: batch of {samples} samples ({bytes} bytes) dropped")]
    OverBudget {
        /// Samples dropped.
        samples: usize,
        /// Bytes their maps needed.
        bytes: usize,
        /// The configured budget.
        budget: usize,
    },

    /// The auditor is closed.
    #[error("auditor is closed")]
    Closed,

    /// A backend plugin could not be loaded, or refused a call.
    #[error("backend {}: {message}", library.display())]
    Backend {
        /// The plugin library.
        library: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A file could not be read or written, or a thread could not be started.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or the thread's name).
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Called from the auditor's own result sink, which runs on a worker this call would wait for.
    #[error("{0} was called from the auditor's own result callback, which runs on a worker thread it would wait for; call it from another thread")]
    Reentrant(&'static str),

    /// A caller's buffer is too small.
    #[error("buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
}

impl Error {
    /// The stable classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::InvalidConfig,
            Error::HeadDigestMismatch { .. } => ErrorKind::HeadDigestMismatch,
            Error::HeadLoad { .. } => ErrorKind::HeadLoad,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::NonFinite { .. } => ErrorKind::NonFinite,
            Error::QueueFull { .. } => ErrorKind::QueueFull,
            Error::OverBudget { .. } => ErrorKind::OverBudget,
            Error::Closed => ErrorKind::Closed,
            Error::Backend { .. } => ErrorKind::Backend,
            Error::Io { .. } => ErrorKind::Io,
            Error::BufferTooSmall { .. } => ErrorKind::BufferTooSmall,
            Error::Reentrant(_) => ErrorKind::Reentrant,
        }
    }

    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { field: field.into(), message: message.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

impl From<mint_head::HeadError> for Error {
    fn from(e: mint_head::HeadError) -> Self {
        use mint_head::HeadError;
        match e {
            HeadError::DigestMismatch { path, expected, actual } => {
                Error::HeadDigestMismatch { path, expected, actual }
            }
            HeadError::Io { path, source } => Error::Io { path, source },
            HeadError::Load { path, message } => Error::HeadLoad { path, message },
            other => Error::HeadLoad { path: PathBuf::new(), message: other.to_string() },
        }
    }
}

/// The library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
