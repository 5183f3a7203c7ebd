//! Write cyxwiz-node model-runtime plugins in safe Rust.
//!
//! A plugin is a `cdylib` that implements [`Plugin`] (how to load a model) and [`Model`] (what
//! a loaded model can do), then exports itself with [`export_plugin!`]. The SDK lifts those
//! plain traits into the stable ABI of `cyxwiz-plugin-api`, catches every panic at the
//! boundary (a panic comes back to the host as [`ErrorKind::PANICKED`], never as an abort),
//! and reports the interface version so an incompatible host refuses the plugin cleanly.
//!
//! # Map
//! - [`author`]: the traits plugin authors implement.
//! - [`types`]: tensors, specs, requests and results as plain Rust types.
//! - [`error`]: [`Error`] and [`ErrorKind`].
//!
//! The host side (open a plugin library, load models, call them) is the separate crate
//! `cyxwiz-plugin-host`; the conformance suite every plugin must pass is `cyxwiz-testkit`
//! (a dev-dependency of the plugin).
//!
//! # A complete plugin
//! `Cargo.toml`: `crate-type = ["cdylib", "rlib"]` and a dependency on `cyxwiz-sdk` only.
//!
//! ```rust,no_run
//! use cyxwiz_sdk::{
//!     export_plugin, Capabilities, DType, Error, Format, LoadOptions, Model, ModelInfo, Plugin,
//!     Result, Tensor, TensorSpec, TensorView,
//! };
//! use std::path::Path;
//!
//! /// Doubles a float32 vector of length 4; the model file holds nothing but `double`.
//! #[derive(Default)]
//! struct Doubler;
//! struct DoublerModel;
//!
//! impl Plugin for Doubler {
//!     const NAME: &'static str = "doubler";
//!     const DESCRIPTION: &'static str = "multiplies a vector by two";
//!     const FORMATS: &'static [Format] = &[Format { name: "double", extensions: &["double"] }];
//!     const CAPABILITIES: Capabilities = Capabilities::TENSOR_INFERENCE;
//!     type Model = DoublerModel;
//!
//!     fn load(&self, path: &Path, _: &LoadOptions) -> Result<DoublerModel> {
//!         let text = std::fs::read_to_string(path).map_err(|e| Error::from_io(path, &e))?;
//!         match text.trim() {
//!             "double" => Ok(DoublerModel),
//!             _ => Err(Error::invalid_input(format!("{}: not a doubler model", path.display()))),
//!         }
//!     }
//! }
//!
//! impl Model for DoublerModel {
//!     fn info(&self) -> Result<ModelInfo> {
//!         let spec = |name: &str| TensorSpec { name: name.into(), dtype: DType::F32, shape: vec![4] };
//!         Ok(ModelInfo {
//!             inputs: vec![spec("x")],
//!             outputs: vec![spec("y")],
//!             capabilities: Capabilities::TENSOR_INFERENCE,
//!             ..ModelInfo::default()
//!         })
//!     }
//!
//!     fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
//!         self.info()?.check_inputs(inputs)?;
//!         let x = inputs[0].to_f32_vec()?;
//!         let y: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
//!         Ok(vec![Tensor::from_f32("y", vec![4], &y)])
//!     }
//! }
//!
//! export_plugin!(Doubler);
//! # fn main() {}
//! ```
//!
//! Then run the conformance suite of `cyxwiz-testkit` from the plugin's tests.
#![deny(missing_docs)]

pub mod author;
#[doc(hidden)]
pub mod convert;
pub mod error;
mod export;
mod log;
pub mod types;

pub use author::{Model, Plugin, ProgressSink, TokenSink, Trainer};
pub use cyxwiz_plugin_api::{SelfTest, INTERFACE_VERSION};
pub use error::{Error, ErrorKind, Result};
#[doc(hidden)]
pub use export::__private;
pub use serde_json;
/// `tracing`, for plugin logs: events reach the host's log tagged with the plugin's name.
pub use tracing;
pub use types::*;
