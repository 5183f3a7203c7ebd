//! A training job as Rust types: what the host hands a backend ([`TrainingJob`]), the host's
//! side of the job ([`TrainingHost`]: batches, progress, checkpoints, pause), and what comes
//! back ([`TrainingOutcome`]).

use super::spec::ModelSpec;
use crate::error::Result;
use crate::types::Metric;
pub use cyxwiz_plugin_api::{CheckpointReason, DataSplit, Directive};

/// A training job, validated by the host.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingJob {
    /// The node's job id.
    pub job_id: String,
    /// The model to build and train.
    pub model: ModelSpec,
    /// Epochs in all.
    pub epochs: u32,
    /// Samples per training batch.
    pub batch_size: u32,
    /// Training batches per epoch.
    pub train_batches: u64,
    /// Validation batches per epoch (0: no validation).
    pub validation_batches: u64,
    /// Seeds initialisation and dropout.
    pub seed: u64,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Intra-op threads (0: the backend's default).
    pub threads: u32,
    /// A scratch directory that survives restarts.
    pub work_dir: std::path::PathBuf,
    /// Checkpoint bytes to resume from; empty to start afresh.
    pub resume: Vec<u8>,
}

/// A batch: `inputs` holds `labels.len()` samples of the model's input shape, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The samples' values.
    pub inputs: Vec<f32>,
    /// The full shape, batch axis first.
    pub shape: Vec<usize>,
    /// Class indices, one per sample.
    pub labels: Vec<i64>,
}

impl Batch {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for a batch without samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A checkpoint handed to the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Why it was written.
    pub reason: CheckpointReason,
    /// Epochs completed.
    pub epochs_done: u32,
    /// Training batches completed over the whole job.
    pub steps_done: u64,
    /// The safetensors bytes ([`super::TensorFile`]).
    pub data: Vec<u8>,
}

/// A progress report.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TrainingProgress {
    /// Current epoch (1-based).
    pub epoch: u32,
    /// Total epochs.
    pub total_epochs: u32,
    /// Batches done in this epoch.
    pub step: u64,
    /// Batches per epoch.
    pub total_steps: u64,
    /// Training samples processed over the whole job.
    pub samples: u64,
    /// True for the report that closes an epoch.
    pub epoch_end: bool,
    /// Metrics now.
    pub metrics: Vec<Metric>,
    /// A line for the operator.
    pub message: String,
}

impl TrainingProgress {
    /// The metric called `name`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

/// What a finished or stopped job produced.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TrainingOutcome {
    /// Epochs completed.
    pub epochs_done: u32,
    /// True when it stopped early on [`Directive::STOP`].
    pub stopped: bool,
    /// Final metrics.
    pub metrics: Vec<Metric>,
}

/// The host's side of a running job, as a backend sees it.
pub trait TrainingHost {
    /// One batch of the dataset.
    fn batch(&mut self, split: DataSplit, epoch: u32, index: u64) -> Result<Batch>;
    /// One progress report; the answer says whether to go on, pause or stop.
    fn report(&mut self, progress: &TrainingProgress) -> Directive;
    /// Stores a checkpoint durably.
    fn checkpoint(&mut self, checkpoint: Checkpoint) -> Result<()>;
    /// Blocks while paused: [`Directive::CONTINUE`] on resume, [`Directive::STOP`] on cancel.
    fn wait_while_paused(&mut self) -> Directive;
}
