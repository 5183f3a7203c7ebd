//! train-candle: the pure-Rust training backend (candle on the CPU). It trains the networks
//! of a [`ModelSpec`](cyxwiz_sdk::training::ModelSpec) and serves the weights they leave, so
//! a node without native libraries (and CI) trains and serves real models.
//!
//! # Training
//! [`Plugin::training_backend`] hands the host a trainer that runs the SDK's shared loop
//! ([`cyxwiz_sdk::training::run`]): the host serves batches, stores checkpoints and decides
//! pause and stop; this crate only does numerics (`train::Trainee` implements
//! [`Network`](cyxwiz_sdk::training::Network)). The semantics follow PyTorch so that the
//! libtorch backend (torch-tch) given the same initial weights and batches computes the same
//! losses:
//! - Layers: Linear (`[out, in]` weights), Conv2d (any stride and zero padding, weights
//!   `[out, in, k, k]`), MaxPool2d (the first maximum of a window gets the gradient),
//!   AvgPool2d, Flatten, Dropout (masks from [`cyxwiz_sdk::training::dropout_mask`] of the
//!   job's seed, the global step and the layer's index, so every backend and every resume
//!   drops the same units), BatchNorm 1d/2d (batch statistics with the biased variance in
//!   training, running statistics moved by `momentum` with the unbiased variance, running
//!   statistics in evaluation), ReLU and LeakyReLU (gradient 0 resp. the slope at 0), exact
//!   (erf) GELU, Sigmoid, Tanh, Softmax.
//! - Losses: cross-entropy on logits against class indices (mean over the batch); MSE
//!   against one-hot targets of width `classes` (mean over all elements). Accuracy: the
//!   first highest output is the label.
//! - Optimizers (`optim`): SGD (momentum, L2 weight decay), Adam (L2), AdamW (decoupled),
//!   RMSprop (`alpha` = the spec's `beta2`, optional momentum), element by element with
//!   `torch.optim`'s rules and defaults. Their state travels in checkpoints as
//!   `state.<tensor>.momentum_buffer`, `.exp_avg`, `.exp_avg_sq`, `.square_avg`.
//! - Where candle's own operations differ from PyTorch (convolution and pooling backward,
//!   ReLU's gradient at 0, sigmoid's overflow) `ops` replaces them (`kernels` holds the
//!   plain loops).
//! - Devices: `cpu` only; anything else is `UNSUPPORTED`. A job's `threads` bounds the
//!   threads (a rayon pool of that size runs every step); 0 uses candle's default.
//!
//! # Serving
//! [`Plugin::load`] opens the `weights.safetensors` a job wrote (format `cyxwiz-weights`):
//! the spec is read from its `cyxwiz.model` metadata and checked, the file bounded by what
//! the spec needs, every tensor checked by name and shape (`serve`). The model takes
//! `input` (float32 `[n, ...input_shape]`, at most 4096 samples a call) and answers
//! `logits` and `probabilities` (`[n, classes]`; the softmax of the logits, or the raw
//! outputs for an MSE model), in evaluation mode.
//!
//! # Modules
//! - `shapes`: checks a spec before anything is allocated; lists its tensors.
//! - `net`: the compiled network, forward passes and losses.
//! - `ops`, `kernels`: PyTorch-exact operations candle lacks.
//! - `optim`: the optimizers.
//! - `train`: the `Network` and the trainer; `serve`: the loaded model.

mod kernels;
mod net;
mod ops;
mod optim;
mod serve;
mod shapes;
mod train;

use cyxwiz_sdk::training::{TrainingHost, TrainingJob, TrainingOutcome};
use cyxwiz_sdk::{export_plugin, Capabilities, Format, LoadOptions, Plugin, Result, Trainer};
use std::path::Path;

pub use serve::TrainedModel;

/// The plugin: stateless.
#[derive(Default)]
pub struct TrainCandle;

/// The training backend.
struct CandleTrainer;

impl Trainer for CandleTrainer {
    fn train(&self, job: &TrainingJob, host: &mut dyn TrainingHost) -> Result<TrainingOutcome> {
        train::train(job, host)
    }
}

impl Plugin for TrainCandle {
    const NAME: &'static str = "train-candle";
    const DESCRIPTION: &'static str =
        "trains networks in pure Rust (candle, CPU) and serves the weights they leave";
    const FORMATS: &'static [Format] = &[Format::new("cyxwiz-weights", &["safetensors"])];
    const CAPABILITIES: Capabilities = Capabilities::TENSOR_INFERENCE.union(Capabilities::TRAINING);
    type Model = TrainedModel;

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<TrainedModel> {
        TrainedModel::load(path, options)
    }

    fn runtime(_options: &cyxwiz_sdk::serde_json::Value) -> Result<String> {
        Ok("candle 0.11 (CPU)".into())
    }

    fn training_backend(&self) -> Result<Box<dyn Trainer>> {
        Ok(Box::new(CandleTrainer))
    }
}

export_plugin!(TrainCandle);
