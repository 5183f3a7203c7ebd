//! Logging across the boundary: the host hands each plugin a [`LogSink`] so that what the
//! plugin (and the native runtime inside it) logs reaches the host's log, with the plugin's
//! name attached.

#![allow(non_local_definitions)] // the `#[sabi_trait]` expansion implements foreign traits inside a const block

use abi_stable::{
    sabi_trait,
    std_types::{RBox, RStr},
    StableAbi,
};

/// Severity of a log record, as a stable `u8` (tracing's levels).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct LogLevel(pub u8);

impl LogLevel {
    /// Nothing is logged.
    pub const OFF: Self = Self(0);
    /// Errors.
    pub const ERROR: Self = Self(1);
    /// Warnings.
    pub const WARN: Self = Self(2);
    /// Information.
    pub const INFO: Self = Self(3);
    /// Debugging detail.
    pub const DEBUG: Self = Self(4);
    /// Tracing detail.
    pub const TRACE: Self = Self(5);
}

/// Where a plugin sends its log records. Implemented by the host.
#[sabi_trait]
pub trait LogSink: Send + Sync {
    /// The most verbose level the host records; the plugin skips records above it.
    fn max_level(&self) -> LogLevel;

    /// One record: level, the emitting module (`target`) and the formatted message.
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>);
}

/// The boxed sink handed to [`crate::PluginMod::set_log_sink`].
pub type LogSinkBox = LogSink_TO<'static, RBox<()>>;
