//! The FFI-safe error every plugin call returns, and its kind.

use abi_stable::{std_types::RString, StableAbi};
use std::fmt;

/// What went wrong, as a stable `u8` code. Unknown codes (from a newer plugin) read as
/// [`ErrorKind::RUNTIME`] through [`ErrorKind::normalized`].
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorKind(pub u8);

impl ErrorKind {
    /// The caller's input is wrong: dtype or shape mismatch, empty batch, malformed file.
    pub const INVALID_INPUT: Self = Self(1);
    /// The plugin cannot do this: unsupported operator, capability or format feature.
    pub const UNSUPPORTED: Self = Self(2);
    /// A file or named item does not exist.
    pub const NOT_FOUND: Self = Self(3);
    /// Memory could not be allocated.
    pub const OUT_OF_MEMORY: Self = Self(4);
    /// The runtime failed while running a valid request.
    pub const RUNTIME: Self = Self(5);
    /// The plugin panicked; the panic was caught at the boundary.
    pub const PANICKED: Self = Self(6);
    /// The request was cancelled by the host.
    pub const CANCELLED: Self = Self(7);
    /// Since 0.1.1: the model is at capacity (slots and queue full); retry later.
    pub const BUSY: Self = Self(8);

    /// Every kind this interface version knows.
    pub const ALL: [Self; 8] = [
        Self::INVALID_INPUT,
        Self::UNSUPPORTED,
        Self::NOT_FOUND,
        Self::OUT_OF_MEMORY,
        Self::RUNTIME,
        Self::PANICKED,
        Self::CANCELLED,
        Self::BUSY,
    ];

    /// A stable label, used in logs, metrics and error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::INVALID_INPUT => "invalid_input",
            Self::UNSUPPORTED => "unsupported",
            Self::NOT_FOUND => "not_found",
            Self::OUT_OF_MEMORY => "out_of_memory",
            Self::RUNTIME => "runtime",
            Self::PANICKED => "panicked",
            Self::CANCELLED => "cancelled",
            Self::BUSY => "busy",
            _ => "unknown",
        }
    }

    /// Maps codes this version does not know to [`ErrorKind::RUNTIME`].
    pub fn normalized(self) -> Self {
        if Self::ALL.contains(&self) {
            self
        } else {
            Self::RUNTIME
        }
    }
}

impl fmt::Debug for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error crossing the plugin boundary: a kind and a human-readable message.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// One line for the operator; names the field, file or operator at fault.
    pub message: RString,
}

impl PluginError {
    /// Builds an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: RString::from(message.into()),
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for PluginError {}
