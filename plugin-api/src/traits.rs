//! The trait objects crossing the boundary: loader, model, training backend, and the sinks the
//! host passes in.
//!
//! Methods after the first are ordered so that new ones can be appended after the
//! `#[sabi(last_prefix_field)]` marker without breaking older plugins.

#![allow(non_local_definitions)] // the `#[sabi_trait]` expansion implements foreign traits inside a const block

use crate::{
    error::PluginError,
    types::{
        Batch, BatchRequest, Checkpoint, Directive, Embeddings, GenerateOutput, GenerateRequest,
        LoadRequest, ModelInfo, Tensor, TensorRef, TrainingJob, TrainingOutcome, TrainingProgress,
    },
};
use abi_stable::{
    sabi_trait,
    std_types::{RBox, RResult, RSlice, RStr, RVec},
};

/// Receives generated text as it is produced. Returning `false` asks the plugin to stop;
/// it then ends with `FinishReason::CANCELLED`.
#[sabi_trait]
pub trait TokenSink {
    /// One piece of generated text (one or more tokens, valid UTF-8).
    #[sabi(last_prefix_field)]
    fn emit(&mut self, text: RStr<'_>) -> bool;
}

/// The host's side of a running training job: data, progress, checkpoints and control.
#[sabi_trait]
pub trait TrainingSink {
    /// One batch of the dataset. Errors end the job.
    fn batch(&mut self, request: &BatchRequest) -> RResult<Batch, PluginError>;

    /// One progress report; the answer says whether to go on, pause or stop.
    fn report(&mut self, progress: &TrainingProgress) -> Directive;

    /// Stores a checkpoint durably before returning.
    fn checkpoint(&mut self, checkpoint: &Checkpoint) -> RResult<(), PluginError>;

    /// Blocks while the job is paused; answers [`Directive::CONTINUE`] on resume or
    /// [`Directive::STOP`] on cancel.
    #[sabi(last_prefix_field)]
    fn wait_while_paused(&mut self) -> Directive;
}

/// A loaded model. Every method may be called from several threads at once.
#[sabi_trait]
pub trait Model: Send + Sync {
    /// Specs, memory use and capabilities.
    fn info(&self) -> RResult<ModelInfo, PluginError>;

    /// Runs the model on named tensors.
    fn infer(&self, inputs: RSlice<'_, TensorRef<'_>>) -> RResult<RVec<Tensor>, PluginError>;

    /// Generates text, streaming it into `sink`.
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: TokenSink_TO<'_, abi_stable::sabi_types::RMut<'_, ()>>,
    ) -> RResult<GenerateOutput, PluginError>;

    /// Embeds a batch of texts.
    fn embed(&self, texts: RSlice<'_, RStr<'_>>) -> RResult<Embeddings, PluginError>;

    /// Tokenizes a text.
    #[sabi(last_prefix_field)]
    fn tokenize(&self, text: RStr<'_>, add_special: bool) -> RResult<RVec<u32>, PluginError>;
}

/// A boxed model owned by the host.
pub type ModelBox = Model_TO<'static, RBox<()>>;

/// A training backend: runs one job per call (several calls may run at once).
#[sabi_trait]
pub trait TrainingBackend: Send + Sync {
    /// Runs `job` until it finishes or the sink stops it, taking batches from, reporting
    /// progress to and checkpointing through `sink`.
    #[sabi(last_prefix_field)]
    fn train(
        &self,
        job: &TrainingJob,
        sink: TrainingSink_TO<'_, abi_stable::sabi_types::RMut<'_, ()>>,
    ) -> RResult<TrainingOutcome, PluginError>;
}

/// A boxed training backend owned by the host.
pub type TrainingBackendBox = TrainingBackend_TO<'static, RBox<()>>;

/// Loads models of the plugin's formats.
#[sabi_trait]
pub trait ModelLoader: Send + Sync {
    /// Loads one model.
    fn load(&self, request: &LoadRequest) -> RResult<ModelBox, PluginError>;

    /// The plugin's training backend, or `UNSUPPORTED`.
    #[sabi(last_prefix_field)]
    fn training_backend(&self) -> RResult<TrainingBackendBox, PluginError>;
}
