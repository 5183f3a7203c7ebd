//! Training backends. The host parses and validates a job's model, loads its dataset and owns
//! durability; a backend builds the network and does the numerics. This module is the
//! contract between them:
//! - [`spec`]: the validated model ([`ModelSpec`]) the host sends, in PyTorch terms.
//! - [`job`]: the job ([`TrainingJob`]), the host's side of it ([`TrainingHost`]: batches,
//!   progress, checkpoints, pause) and the outcome.
//! - [`run`]: the loop every backend shares; a backend implements [`Network`] (one training
//!   step, one evaluation, its tensors) and calls [`run()`].
//! - [`init`]: the seeded initial weights and dropout masks all backends share.
//! - [`tensors`]: named float32 tensors and the safetensors files checkpoints and weights are.
//!
//! # Checkpoints and weights
//! A checkpoint is a safetensors file: the model tensors under their spec names
//! (`<layer id>.weight`, `.bias`, BatchNorm's `.running_mean`/`.running_var`, PyTorch layout:
//! Linear `[out, in]`, Conv2d `[out, in, kh, kw]`), the optimizer's tensors under `state.`,
//! and metadata: the model spec as JSON under `cyxwiz.model`, the position under `state.*`.
//! The job's `weights.safetensors` is its final checkpoint without the `state.` entries.

pub mod init;
pub mod job;
pub mod run;
pub mod spec;
pub mod tensors;

pub use init::{derive_seed, dropout_mask, initial_parameters, permutation, SplitMix64};
pub use job::{
    Batch, Checkpoint, CheckpointReason, DataSplit, Directive, TrainingHost, TrainingJob,
    TrainingOutcome, TrainingProgress,
};
pub use run::{run, Network, StepContext, StepStats};
pub use spec::{DatasetShape, Layer, LayerKind, Loss, ModelSpec, Optimizer, OptimizerKind};
pub use tensors::{NamedTensor, TensorFile, MODEL_KEY, STATE_PREFIX};
