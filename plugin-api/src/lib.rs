//! The stable ABI between the cyxwiz-node host and its model-runtime plugins.
//!
//! This crate holds types only: the root module every plugin exports ([`PluginMod`]), the
//! trait objects a plugin hands back ([`ModelLoader`], [`Model`], [`TrainingBackend`]), the
//! sinks the host hands in ([`TokenSink`], [`TrainingSink`]), and the plain data that crosses
//! the boundary. Plugin authors do not use it directly: they write against `cyxwiz-sdk`, which
//! lifts a safe Rust trait into these types and catches panics at the boundary.
//!
//! # Map
//! - [`types`]: tensors, dtypes, capabilities, requests and results (plain `#[repr(C)]` data).
//! - [`error`]: [`PluginError`] and its [`ErrorKind`].
//! - [`traits`]: the `#[sabi_trait]` objects.
//! - [`log`]: the log sink the host hands each plugin.
//! - this module: the root module and the interface version.
//!
//! # Versioning
//! The interface version is this crate's package version ([`INTERFACE_VERSION`]). The host
//! refuses a plugin whose version is incompatible (for `0.x`, a different minor version) and
//! names both versions. Growth is by appending only: new root-module fields and new trait
//! methods go after the `#[sabi(last_prefix_field)]` marker, so plugins built against an older
//! patch release keep loading. Enumerations are `u8`/`u32` newtypes with associated constants,
//! so adding a value is not a layout change.
#![deny(missing_docs)]

pub mod error;
pub mod log;
pub mod traits;
pub mod types;

pub use abi_stable;
use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RString},
    StableAbi,
};

pub use error::{ErrorKind, PluginError};
pub use log::{LogLevel, LogSink, LogSinkBox, LogSink_TO};
pub use traits::{
    Model, ModelBox, ModelLoader, ModelLoader_TO, Model_TO, TokenSink, TokenSink_TO,
    TrainingBackend, TrainingBackendBox, TrainingBackend_TO, TrainingSink, TrainingSink_TO,
};
pub use types::*;

/// The interface version plugins are built against: this crate's package version.
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The boxed loader a plugin's [`PluginMod::new_loader`] returns.
pub type LoaderBox = ModelLoader_TO<'static, abi_stable::std_types::RBox<()>>;

/// The root module every plugin library exports.
///
/// Fields up to and including the one marked `last_prefix_field` are always present; fields
/// appended later are read through accessors returning `Option`, so the host copes with plugins
/// built before they existed.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(option))]
pub struct PluginMod {
    /// Describes the plugin: name, version, formats, capabilities.
    pub info: extern "C" fn() -> PluginInfo,
    /// Creates the plugin's model loader. Called once per process by the host.
    pub new_loader: extern "C" fn() -> RResult<LoaderBox, PluginError>,
    /// Runs one of the boundary self-tests ([`SelfTest`]); used by the conformance kit to
    /// prove that a panic inside the plugin comes back as [`ErrorKind::PANICKED`].
    #[sabi(last_prefix_field)]
    pub self_test: extern "C" fn(test: SelfTest) -> RResult<(), PluginError>,
    /// Since 0.1.1: receives the host's log sink once, right after loading. Plugins built
    /// against 0.1.0 lack it and log nowhere.
    pub set_log_sink: extern "C" fn(sink: LogSinkBox),
    /// Since 0.1.2: names the native runtime behind the plugin and its version (e.g.
    /// `ONNX Runtime 1.31.1`). `options` is a JSON object, the host's `[runtimes.<plugin>]`
    /// table, so a plugin that loads its runtime library lazily can load it to answer; an
    /// error says why the runtime is unusable. Plugins built against 0.1.1 lack it.
    pub runtime: extern "C" fn(options: RStr<'_>) -> RResult<RString, PluginError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "cyxwiz_plugin";
    const NAME: &'static str = "cyxwiz_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
