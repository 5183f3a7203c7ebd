//! Plain data crossing the plugin boundary: tensors, specs, requests and results.
//!
//! Every type here is `#[repr(C)]` and `StableAbi`. Open sets of values (dtypes, capabilities,
//! finish reasons) are newtypes over integers so that new values can be appended without
//! changing a layout.

use abi_stable::{
    std_types::{ROption, RSlice, RStr, RString, RVec, Tuple2},
    StableAbi,
};
use std::fmt;

/// Element type of a tensor, as a stable `u8` code.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DType(pub u8);

impl DType {
    /// 32-bit float.
    pub const F32: Self = Self(1);
    /// 64-bit float.
    pub const F64: Self = Self(2);
    /// 16-bit IEEE float.
    pub const F16: Self = Self(3);
    /// 16-bit brain float.
    pub const BF16: Self = Self(4);
    /// Signed 8-bit integer.
    pub const I8: Self = Self(5);
    /// Signed 16-bit integer.
    pub const I16: Self = Self(6);
    /// Signed 32-bit integer.
    pub const I32: Self = Self(7);
    /// Signed 64-bit integer.
    pub const I64: Self = Self(8);
    /// Unsigned 8-bit integer.
    pub const U8: Self = Self(9);
    /// Unsigned 16-bit integer.
    pub const U16: Self = Self(10);
    /// Unsigned 32-bit integer.
    pub const U32: Self = Self(11);
    /// Unsigned 64-bit integer.
    pub const U64: Self = Self(12);
    /// Boolean, one byte per element (0 or 1).
    pub const BOOL: Self = Self(13);

    /// Every dtype this interface version knows.
    pub const ALL: [Self; 13] = [
        Self::F32,
        Self::F64,
        Self::F16,
        Self::BF16,
        Self::I8,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::U8,
        Self::U16,
        Self::U32,
        Self::U64,
        Self::BOOL,
    ];

    /// Size of one element in bytes, or `None` for an unknown code.
    pub fn size_of(self) -> Option<usize> {
        Some(match self {
            Self::I8 | Self::U8 | Self::BOOL => 1,
            Self::F16 | Self::BF16 | Self::I16 | Self::U16 => 2,
            Self::F32 | Self::I32 | Self::U32 => 4,
            Self::F64 | Self::I64 | Self::U64 => 8,
            _ => return None,
        })
    }

    /// The numpy-style name (`float32`, `int64`, ...), stable for JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::I32 => "int32",
            Self::I64 => "int64",
            Self::U8 => "uint8",
            Self::U16 => "uint16",
            Self::U32 => "uint32",
            Self::U64 => "uint64",
            Self::BOOL => "bool",
            _ => "unknown",
        }
    }

    /// Parses a numpy-style name; accepts the short forms `f32`, `i64`, ... as well.
    pub fn parse(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        Some(match lower.as_str() {
            "float32" | "f32" | "float" => Self::F32,
            "float64" | "f64" | "double" => Self::F64,
            "float16" | "f16" | "half" => Self::F16,
            "bfloat16" | "bf16" => Self::BF16,
            "int8" | "i8" => Self::I8,
            "int16" | "i16" => Self::I16,
            "int32" | "i32" => Self::I32,
            "int64" | "i64" => Self::I64,
            "uint8" | "u8" => Self::U8,
            "uint16" | "u16" => Self::U16,
            "uint32" | "u32" => Self::U32,
            "uint64" | "u64" => Self::U64,
            "bool" => Self::BOOL,
            _ => return None,
        })
    }
}

impl fmt::Debug for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a plugin or a loaded model can do, as bit flags.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// No capability.
    pub const NONE: Self = Self(0);
    /// `infer` on named tensors.
    pub const TENSOR_INFERENCE: Self = Self(1);
    /// `generate`: text generation with streaming.
    pub const TEXT_GENERATION: Self = Self(1 << 1);
    /// `embed`: texts to vectors.
    pub const EMBEDDINGS: Self = Self(1 << 2);
    /// A training backend.
    pub const TRAINING: Self = Self(1 << 3);

    /// Every capability with its stable label.
    pub const NAMED: [(Self, &'static str); 4] = [
        (Self::TENSOR_INFERENCE, "tensor_inference"),
        (Self::TEXT_GENERATION, "text_generation"),
        (Self::EMBEDDINGS, "embeddings"),
        (Self::TRAINING, "training"),
    ];

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Labels of the flags set, in a stable order.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMED
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
            .collect()
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.names().join("|"))
    }
}

/// Why a generation ended.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FinishReason(pub u8);

impl FinishReason {
    /// An end-of-sequence token or a stop string.
    pub const STOP: Self = Self(1);
    /// `max_tokens` reached.
    pub const LENGTH: Self = Self(2);
    /// The sink asked to stop (client went away).
    pub const CANCELLED: Self = Self(3);

    /// The OpenAI-style label (`stop`, `length`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::STOP => "stop",
            Self::LENGTH => "length",
            Self::CANCELLED => "cancelled",
            _ => "unknown",
        }
    }
}

impl fmt::Debug for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Boundary self-tests a plugin runs on request ([`crate::PluginMod::self_test`]).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Debug)]
pub struct SelfTest(pub u8);

impl SelfTest {
    /// Returns `Ok(())` through the same guarded path every call takes.
    pub const ECHO: Self = Self(0);
    /// Panics inside the guarded path; must come back as `ErrorKind::PANICKED`.
    pub const PANIC: Self = Self(1);
}

/// A string key and value.
pub type KeyValue = Tuple2<RString, RString>;

/// A file format a plugin handles: a name (`onnx`) and file extensions without the dot.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct FormatSpec {
    /// Lower-case format name, e.g. `onnx`, `gguf`, `tflite`.
    pub name: RString,
    /// Lower-case file extensions without the dot, e.g. `onnx`.
    pub extensions: RVec<RString>,
}

/// What a plugin tells the host about itself.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PluginInfo {
    /// Unique plugin name, e.g. `onnx-tract`.
    pub name: RString,
    /// The plugin's own version (its crate version).
    pub version: RString,
    /// One line describing the runtime behind it.
    pub description: RString,
    /// The formats it loads.
    pub formats: RVec<FormatSpec>,
    /// What its models can do.
    pub capabilities: Capabilities,
    /// The `cyxwiz-plugin-api` version it was built against.
    pub interface_version: RString,
}

/// Name, dtype and shape of a model input or output. A dimension of `-1` is dynamic.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// Tensor name as the model declares it.
    pub name: RString,
    /// Element type.
    pub dtype: DType,
    /// Shape; `-1` marks a dynamic dimension.
    pub shape: RVec<i64>,
}

/// A borrowed input tensor: raw little-endian bytes plus dtype and shape. No copy is made to
/// pass it across the boundary.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    /// Input name.
    pub name: RStr<'a>,
    /// Element type.
    pub dtype: DType,
    /// Concrete shape.
    pub shape: RSlice<'a, i64>,
    /// `product(shape) * dtype.size_of()` bytes, row-major, native (little) endian.
    pub data: RSlice<'a, u8>,
}

/// An owned output tensor, moved across the boundary without copying its buffer.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Output name.
    pub name: RString,
    /// Element type.
    pub dtype: DType,
    /// Concrete shape.
    pub shape: RVec<i64>,
    /// Row-major little-endian bytes.
    pub data: RVec<u8>,
}

/// What a loaded model tells the host about itself.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// Tensor inputs (empty for text-only models).
    pub inputs: RVec<TensorSpec>,
    /// Tensor outputs (empty for text-only models).
    pub outputs: RVec<TensorSpec>,
    /// Bytes of memory the loaded model holds (best estimate).
    pub memory_bytes: u64,
    /// What this model can do (a subset of the plugin's capabilities).
    pub capabilities: Capabilities,
    /// Context length in tokens for text models, 0 otherwise.
    pub context_length: u32,
    /// Embedding width for embedding models, 0 otherwise.
    pub embedding_dim: u32,
    /// Free-form metadata (architecture, quantisation, producer, ...).
    pub metadata: RVec<KeyValue>,
}

/// How the host asks a plugin to load a model.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct LoadRequest {
    /// Path to the model file or directory.
    pub path: RString,
    /// Threads the runtime may use for one call; 0 lets the plugin choose.
    pub threads: u32,
    /// Device to run on: `cpu`, `cuda:0`, ...
    pub device: RString,
    /// Plugin-specific options as a JSON object (`{}` when none).
    pub options_json: RString,
}

/// One chat message.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: RString,
    /// Message text.
    pub content: RString,
}

/// Sampling parameters for `generate`. Zero values mean "plugin default" where noted.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Maximum tokens to generate.
    pub max_tokens: u32,
    /// Temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling; 1 disables.
    pub top_p: f32,
    /// Top-k; 0 disables.
    pub top_k: u32,
    /// Min-p; 0 disables.
    pub min_p: f32,
    /// Repetition penalty; 1 disables.
    pub repeat_penalty: f32,
    /// Seed for reproducible sampling.
    pub seed: ROption<u64>,
    /// Strings that end generation (not included in the output).
    pub stop: RVec<RString>,
}

/// A generation request: chat messages (rendered with the model's template) or a raw prompt.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct GenerateRequest {
    /// Chat messages; when non-empty, `prompt` is ignored.
    pub messages: RVec<ChatMessage>,
    /// Raw prompt for completion-style requests.
    pub prompt: RString,
    /// Sampling parameters.
    pub params: SamplingParams,
}

/// How a generation ended.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq)]
pub struct GenerateOutput {
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// Tokens in the prompt after templating.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Since 0.3.0: how many of `prompt_tokens` were not computed again because the runtime
    /// still held them from an earlier request (prompt-prefix reuse); 0 when it keeps none.
    pub cached_tokens: u32,
}

/// A batch of embeddings, row-major: `data.len() == rows * dim`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// Width of each vector.
    pub dim: u32,
    /// `rows * dim` floats.
    pub data: RVec<f32>,
    /// Tokens consumed over the whole batch.
    pub prompt_tokens: u32,
}

/// A named metric value.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Metric {
    /// Metric name, e.g. `loss`, `accuracy`.
    pub name: RString,
    /// Its value.
    pub value: f64,
}

/// A training job handed to a training backend. The host has validated everything in it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct TrainingJob {
    /// The node's job id.
    pub job_id: RString,
    /// The validated model as JSON: `cyxwiz_sdk::training::ModelSpec` (layers in PyTorch
    /// terms with their weight-name prefixes and shapes, the loss, the optimizer).
    pub model_json: RString,
    /// Epochs to train in all (a resumed job continues towards the same number).
    pub epochs: u32,
    /// Samples per training batch (the last batch of an epoch may be smaller).
    pub batch_size: u32,
    /// Training batches per epoch ([`TrainingSink::batch`](crate::TrainingSink) serves
    /// indices `0..train_batches`).
    pub train_batches: u64,
    /// Validation batches per epoch (0 when the job has no validation split).
    pub validation_batches: u64,
    /// Seeds weight initialisation and dropout, so a job is reproducible.
    pub seed: u64,
    /// `cpu` or `cuda:N`.
    pub device: RString,
    /// Intra-op threads the backend may use (0: its default).
    pub threads: u32,
    /// A scratch directory the backend may use; it survives restarts.
    pub work_dir: RString,
    /// The checkpoint to resume from (bytes the backend produced earlier through
    /// [`TrainingSink::checkpoint`](crate::TrainingSink)), or empty to start afresh.
    pub resume: RVec<u8>,
}

/// Which part of the dataset a batch comes from.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataSplit(pub u8);

impl DataSplit {
    /// The samples trained on.
    pub const TRAIN: Self = Self(0);
    /// The held-out validation samples.
    pub const VALIDATION: Self = Self(1);
}

/// A batch the backend asks the host for.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRequest {
    /// Training or validation.
    pub split: DataSplit,
    /// The epoch (0-based); the host shuffles the training samples per epoch with the job's
    /// seed, so the same request always gives the same batch.
    pub epoch: u32,
    /// The batch within the epoch (0-based).
    pub index: u64,
}

/// A batch of samples: `inputs` is float32 `[n, ...sample shape]`, `labels` int64 `[n]`
/// class indices.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Batch {
    /// The samples.
    pub inputs: Tensor,
    /// Their class labels.
    pub labels: Tensor,
}

/// What the host tells a backend after a progress report.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Directive(pub u8);

impl Directive {
    /// Go on.
    pub const CONTINUE: Self = Self(0);
    /// Checkpoint with [`CheckpointReason::PAUSE`], then call `wait_while_paused`.
    pub const PAUSE: Self = Self(1);
    /// Checkpoint with [`CheckpointReason::STOPPED`] and return promptly.
    pub const STOP: Self = Self(2);
}

/// Why a checkpoint was written.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CheckpointReason(pub u8);

impl CheckpointReason {
    /// At the end of an epoch.
    pub const EPOCH: Self = Self(0);
    /// Before pausing.
    pub const PAUSE: Self = Self(1);
    /// Stopped early (cancel); the weights are partial.
    pub const STOPPED: Self = Self(2);
    /// The finished job's final state.
    pub const FINAL: Self = Self(3);
    /// Asked for by the host outside those points.
    pub const REQUESTED: Self = Self(4);
}

/// A checkpoint: the backend's whole state as bytes the host stores durably and hands back
/// in [`TrainingJob::resume`]. The bytes are a safetensors file whose model tensors are named
/// as in the spec (`<layer id>.weight`) and whose other tensors start with `state.`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Why.
    pub reason: CheckpointReason,
    /// Epochs completed.
    pub epochs_done: u32,
    /// Training batches completed over the whole job.
    pub steps_done: u64,
    /// The bytes.
    pub data: RVec<u8>,
}

/// A progress report from a training backend.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct TrainingProgress {
    /// Current epoch (1-based).
    pub epoch: u32,
    /// Total epochs.
    pub total_epochs: u32,
    /// Batches done in this epoch.
    pub step: u64,
    /// Batches per epoch.
    pub total_steps: u64,
    /// Training samples processed over the whole job (this run and earlier ones).
    pub samples: u64,
    /// True for the report closing an epoch (with its validation metrics).
    pub epoch_end: bool,
    /// Metrics at this point (`loss`, `accuracy`, `val_loss`, `val_accuracy`, ...).
    pub metrics: RVec<Metric>,
    /// A line for the operator.
    pub message: RString,
}

/// What a finished (or stopped) training job produced; the weights came through
/// [`TrainingSink::checkpoint`](crate::TrainingSink) with [`CheckpointReason::FINAL`] or
/// [`CheckpointReason::STOPPED`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct TrainingOutcome {
    /// Epochs completed.
    pub epochs_done: u32,
    /// True when the job stopped early on [`Directive::STOP`].
    pub stopped: bool,
    /// Final metrics.
    pub metrics: RVec<Metric>,
}
