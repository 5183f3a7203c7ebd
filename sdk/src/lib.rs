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
//! - [`training`]: training backends: the model spec, the job, the shared loop, checkpoints.
//! - [`read_json`]: a plugin's own JSON file into a serde type, errors naming file and field.
//!
//! The host side (open a plugin library, load models, call them) is the separate crate
//! `cyxwiz-plugin-host`; the conformance suite every plugin must pass is `cyxwiz-testkit`
//! (a dev-dependency of the plugin).
//!
//! # A complete plugin
//! `Cargo.toml`: `crate-type = ["cdylib", "rlib"]` and a dependency on `cyxwiz-sdk` only.
//!
//! ```rust,no_run
//! use cyxwiz_sdk::{serde::Deserialize, *};
//! use std::path::Path;
//!
//! /// Doubles a float32 `[batch, width]` matrix; the model file is `{"width": 4}`.
//! #[derive(Default)]
//! struct Doubler;
//! #[derive(Deserialize)]
//! #[serde(crate = "cyxwiz_sdk::serde")]
//! struct DoublerModel {
//!     width: std::num::NonZeroU32,
//! }
//!
//! impl Plugin for Doubler {
//!     const NAME: &'static str = "doubler";
//!     const DESCRIPTION: &'static str = "multiplies a matrix by two";
//!     const FORMATS: &'static [Format] = &[Format::new("double", &["double"])];
//!     const CAPABILITIES: Capabilities = Capabilities::TENSOR_INFERENCE;
//!     type Model = DoublerModel;
//!
//!     fn load(&self, path: &Path, _: &LoadOptions) -> Result<DoublerModel> {
//!         read_json(path) // NOT_FOUND / INVALID_INPUT errors naming the file and field
//!     }
//! }
//!
//! impl Model for DoublerModel {
//!     fn info(&self) -> Result<ModelInfo> {
//!         let shape = [-1, i64::from(self.width.get())];
//!         Ok(ModelInfo::tensors(
//!             vec![TensorSpec::f32("x", shape)],
//!             vec![TensorSpec::f32("y", shape)],
//!         ))
//!     }
//!
//!     fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
//!         self.info()?.check_inputs(inputs)?;
//!         let y: Vec<f32> = inputs[0].to_f32_vec()?.iter().map(|v| v * 2.0).collect();
//!         Ok(vec![Tensor::from_f32("y", inputs[0].shape.to_vec(), &y)])
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
mod json;
mod log;
pub mod training;
pub mod types;

pub use author::{Model, Plugin, TokenSink, Trainer};
pub use cyxwiz_plugin_api::{SelfTest, INTERFACE_VERSION};
pub use error::{Error, ErrorKind, Result};
#[doc(hidden)]
pub use export::__private;
pub use json::read_json;
/// `serde`, with its derive macros, for the types [`read_json`] reads (add
/// `#[serde(crate = "cyxwiz_sdk::serde")]` to derive without depending on serde yourself).
pub use serde;
pub use serde_json;
/// `tracing`, for plugin logs: events reach the host's log tagged with the plugin's name.
pub use tracing;
pub use types::*;
