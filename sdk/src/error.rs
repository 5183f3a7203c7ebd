//! The error type plugin authors return and the host receives, with its kind.

pub use cyxwiz_plugin_api::ErrorKind;
use cyxwiz_plugin_api::PluginError;
use std::fmt;

/// An error from a plugin: a kind plus a one-line message naming what is at fault.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// The message for the operator.
    pub message: String,
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of any kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind: kind.normalized(),
            message: message.into(),
        }
    }
    /// The caller's input is wrong (dtype, shape, empty batch, malformed file).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INVALID_INPUT, message)
    }
    /// The plugin cannot do this (operator, capability, format feature).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UNSUPPORTED, message)
    }
    /// A file or item does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NOT_FOUND, message)
    }
    /// Memory could not be allocated.
    pub fn out_of_memory(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::OUT_OF_MEMORY, message)
    }
    /// The runtime failed on a valid request.
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RUNTIME, message)
    }
    /// The request was cancelled.
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::CANCELLED, message)
    }
    /// A caught panic.
    pub fn panicked(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PANICKED, message)
    }

    /// Classifies an I/O error on `path` (missing file, directory, permissions).
    pub fn from_io(path: &std::path::Path, err: &std::io::Error) -> Self {
        let shown = path.display();
        match err.kind() {
            std::io::ErrorKind::NotFound => Self::not_found(format!("{shown}: no such file")),
            std::io::ErrorKind::IsADirectory => {
                Self::invalid_input(format!("{shown}: is a directory, expected a model file"))
            }
            std::io::ErrorKind::OutOfMemory => Self::out_of_memory(format!("{shown}: {err}")),
            _ => Self::invalid_input(format!("{shown}: {err}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({}: {:?})", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl From<PluginError> for Error {
    fn from(err: PluginError) -> Self {
        Self::new(err.kind, err.message.into_string())
    }
}

impl From<Error> for PluginError {
    fn from(err: Error) -> Self {
        PluginError::new(err.kind, err.message)
    }
}
