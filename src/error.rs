//! One error type for the library, with a stable classification ([`ErrorKind`]) that the
//! C ABI maps to numeric result codes.

use std::path::PathBuf;

/// What went wrong, in a closed set that never changes meaning between releases.
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
}

/// The library's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {field}: {message}")]
    Config { field: String, message: String },

    #[error("head file {}: sha256 is {actual}, but the configuration expects {expected}; refusing to start", path.display())]
    HeadDigestMismatch { path: PathBuf, expected: String, actual: String },

    #[error("head {}: {message}", path.display())]
    HeadLoad { path: PathBuf, message: String },

    #[error("{0}")]
    InvalidInput(String),

    #[error("{rejected} of {total} samples had NaN or infinite values (first: sample id {first_id}, tap '{tap}') and were dropped; the other {} were accepted", total - rejected)]
    NonFinite { rejected: usize, total: usize, first_id: u64, tap: String },

    #[error("queue full ({capacity} samples): batch of {samples} samples dropped")]
    QueueFull { samples: usize, capacity: usize },

    #[error("CNN copy budget of {budget} bytes exhausted: batch of {samples} samples ({bytes} bytes) dropped")]
    OverBudget { samples: usize, bytes: usize, budget: usize },

    #[error("auditor is closed")]
    Closed,

    #[error("backend {}: {message}", library.display())]
    Backend { library: PathBuf, message: String },

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("buffer too small: {needed} bytes needed")]
    BufferTooSmall { needed: usize },
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
        }
    }

    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { field: field.into(), message: message.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// The library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
