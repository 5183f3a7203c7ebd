//! Conversions between the ABI data of `cyxwiz-plugin-api` and the SDK's std types, used on
//! both sides of the boundary: the author side (inside `export_plugin!`) and the host-side
//! loader (`cyxwiz-plugin-host`), which is why the host direction is public. Plugin authors
//! never call these.

use crate::training::{Batch, Checkpoint, TrainingJob, TrainingOutcome, TrainingProgress};
use crate::types::{
    ChatMessage, Embeddings, GenerateOutput, GenerateRequest, LoadOptions, Metric, ModelInfo,
    PluginMetadata, SamplingParams, Tensor, TensorSpec, TensorView,
};
use cyxwiz_plugin_api as abi;
use cyxwiz_plugin_api::abi_stable::std_types::{ROption, RString, RVec, Tuple2};

fn rstrings(items: &[String]) -> RVec<RString> {
    items.iter().map(|s| RString::from(s.as_str())).collect()
}

fn strings(items: &RVec<RString>) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A plugin's self-description as the host reads it.
pub fn metadata_from_abi(info: &abi::PluginInfo) -> PluginMetadata {
    PluginMetadata {
        name: info.name.to_string(),
        version: info.version.to_string(),
        description: info.description.to_string(),
        formats: info
            .formats
            .iter()
            .map(|f| (f.name.to_string(), strings(&f.extensions)))
            .collect(),
        capabilities: info.capabilities,
        interface_version: info.interface_version.to_string(),
    }
}

fn spec_to_abi(spec: &TensorSpec) -> abi::TensorSpec {
    abi::TensorSpec {
        name: spec.name.as_str().into(),
        dtype: spec.dtype,
        shape: spec.shape.iter().copied().collect(),
    }
}

fn spec_from_abi(spec: &abi::TensorSpec) -> TensorSpec {
    TensorSpec {
        name: spec.name.to_string(),
        dtype: spec.dtype,
        shape: spec.shape.to_vec(),
    }
}

pub(crate) fn info_to_abi(info: &ModelInfo) -> abi::ModelInfo {
    abi::ModelInfo {
        inputs: info.inputs.iter().map(spec_to_abi).collect(),
        outputs: info.outputs.iter().map(spec_to_abi).collect(),
        memory_bytes: info.memory_bytes,
        capabilities: info.capabilities,
        context_length: info.context_length,
        embedding_dim: info.embedding_dim,
        metadata: info
            .metadata
            .iter()
            .map(|(k, v)| Tuple2(k.as_str().into(), v.as_str().into()))
            .collect(),
    }
}

/// A loaded model's info as the host reads it.
pub fn info_from_abi(info: &abi::ModelInfo) -> ModelInfo {
    ModelInfo {
        inputs: info.inputs.iter().map(spec_from_abi).collect(),
        outputs: info.outputs.iter().map(spec_from_abi).collect(),
        memory_bytes: info.memory_bytes,
        capabilities: info.capabilities,
        context_length: info.context_length,
        embedding_dim: info.embedding_dim,
        metadata: info
            .metadata
            .iter()
            .map(|Tuple2(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Borrows a host tensor view for a call into the plugin (no copy).
pub fn view_to_abi<'a>(view: &TensorView<'a>) -> abi::TensorRef<'a> {
    abi::TensorRef {
        name: view.name.into(),
        dtype: view.dtype,
        shape: view.shape.into(),
        data: view.data.into(),
    }
}

pub(crate) fn view_from_abi<'a>(tensor: &abi::TensorRef<'a>) -> TensorView<'a> {
    TensorView {
        name: tensor.name.as_str(),
        dtype: tensor.dtype,
        shape: tensor.shape.as_slice(),
        data: tensor.data.as_slice(),
    }
}

pub(crate) fn tensor_to_abi(tensor: Tensor) -> abi::Tensor {
    abi::Tensor {
        name: tensor.name.into(),
        dtype: tensor.dtype,
        shape: tensor.shape.into(),
        data: tensor.data.into(),
    }
}

/// Takes an output tensor the plugin returned.
pub fn tensor_from_abi(tensor: abi::Tensor) -> Tensor {
    Tensor {
        name: tensor.name.into_string(),
        dtype: tensor.dtype,
        shape: tensor.shape.into_vec(),
        data: tensor.data.into_vec(),
    }
}

/// A load request for the plugin.
pub fn load_to_abi(path: &str, options: &LoadOptions) -> abi::LoadRequest {
    abi::LoadRequest {
        path: path.into(),
        threads: options.threads,
        device: options.device.as_str().into(),
        options_json: options.options.to_string().into(),
    }
}

pub(crate) fn load_from_abi(request: &abi::LoadRequest) -> crate::Result<LoadOptions> {
    let options = if request.options_json.trim().is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(&request.options_json).map_err(|e| {
            crate::Error::invalid_input(format!("load options are not valid JSON: {e}"))
        })?
    };
    Ok(LoadOptions {
        threads: request.threads,
        device: request.device.to_string(),
        options,
    })
}

/// A generation request for the plugin.
pub fn generate_to_abi(request: &GenerateRequest) -> abi::GenerateRequest {
    let p = &request.params;
    abi::GenerateRequest {
        messages: request
            .messages
            .iter()
            .map(|m| abi::ChatMessage {
                role: m.role.as_str().into(),
                content: m.content.as_str().into(),
            })
            .collect(),
        prompt: request.prompt.as_str().into(),
        params: abi::SamplingParams {
            max_tokens: p.max_tokens,
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: p.top_k,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            seed: p.seed.into(),
            stop: rstrings(&p.stop),
        },
    }
}

pub(crate) fn generate_from_abi(request: &abi::GenerateRequest) -> GenerateRequest {
    let p = &request.params;
    GenerateRequest {
        messages: request
            .messages
            .iter()
            .map(|m| ChatMessage {
                role: m.role.to_string(),
                content: m.content.to_string(),
            })
            .collect(),
        prompt: request.prompt.to_string(),
        params: SamplingParams {
            max_tokens: p.max_tokens,
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: p.top_k,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            seed: match p.seed {
                ROption::RSome(s) => Some(s),
                ROption::RNone => None,
            },
            stop: strings(&p.stop),
        },
    }
}

pub(crate) fn output_to_abi(out: GenerateOutput) -> abi::GenerateOutput {
    abi::GenerateOutput {
        finish_reason: out.finish_reason,
        prompt_tokens: out.prompt_tokens,
        completion_tokens: out.completion_tokens,
        cached_tokens: out.cached_tokens,
    }
}

/// How a generation ended, as the plugin reported it.
pub fn output_from_abi(out: abi::GenerateOutput) -> GenerateOutput {
    GenerateOutput {
        finish_reason: out.finish_reason,
        prompt_tokens: out.prompt_tokens,
        completion_tokens: out.completion_tokens,
        cached_tokens: out.cached_tokens,
    }
}

pub(crate) fn embeddings_to_abi(e: Embeddings) -> crate::Result<abi::Embeddings> {
    let dim = u32::try_from(e.dim)
        .map_err(|_| crate::Error::runtime(format!("embedding width {} is too large", e.dim)))?;
    Ok(abi::Embeddings {
        dim,
        data: e.data.into(),
        prompt_tokens: e.prompt_tokens,
    })
}

/// Embeddings the plugin returned.
pub fn embeddings_from_abi(e: abi::Embeddings) -> Embeddings {
    Embeddings {
        dim: e.dim as usize,
        data: e.data.into_vec(),
        prompt_tokens: e.prompt_tokens,
    }
}

fn metrics_to_abi(metrics: &[Metric]) -> RVec<abi::Metric> {
    metrics
        .iter()
        .map(|m| abi::Metric {
            name: m.name.as_str().into(),
            value: m.value,
        })
        .collect()
}

fn metrics_from_abi(metrics: &RVec<abi::Metric>) -> Vec<Metric> {
    metrics
        .iter()
        .map(|m| Metric {
            name: m.name.to_string(),
            value: m.value,
        })
        .collect()
}

pub(crate) fn progress_to_abi(p: &TrainingProgress) -> abi::TrainingProgress {
    abi::TrainingProgress {
        epoch: p.epoch,
        total_epochs: p.total_epochs,
        step: p.step,
        total_steps: p.total_steps,
        samples: p.samples,
        epoch_end: p.epoch_end,
        metrics: metrics_to_abi(&p.metrics),
        message: p.message.as_str().into(),
    }
}

/// A training progress report from the plugin.
pub fn progress_from_abi(p: &abi::TrainingProgress) -> TrainingProgress {
    TrainingProgress {
        epoch: p.epoch,
        total_epochs: p.total_epochs,
        step: p.step,
        total_steps: p.total_steps,
        samples: p.samples,
        epoch_end: p.epoch_end,
        metrics: metrics_from_abi(&p.metrics),
        message: p.message.to_string(),
    }
}

/// A training job for the plugin.
pub fn job_to_abi(job: &TrainingJob) -> crate::Result<abi::TrainingJob> {
    let model_json = serde_json::to_string(&job.model)
        .map_err(|e| crate::Error::invalid_input(format!("model spec does not serialize: {e}")))?;
    Ok(abi::TrainingJob {
        job_id: job.job_id.as_str().into(),
        model_json: model_json.into(),
        epochs: job.epochs,
        batch_size: job.batch_size,
        train_batches: job.train_batches,
        validation_batches: job.validation_batches,
        seed: job.seed,
        device: job.device.as_str().into(),
        threads: job.threads,
        work_dir: job.work_dir.to_string_lossy().as_ref().into(),
        resume: job.resume.as_slice().into(),
    })
}

pub(crate) fn job_from_abi(job: &abi::TrainingJob) -> crate::Result<TrainingJob> {
    Ok(TrainingJob {
        job_id: job.job_id.to_string(),
        model: serde_json::from_str(&job.model_json).map_err(|e| {
            crate::Error::invalid_input(format!("training model spec is not valid: {e}"))
        })?,
        epochs: job.epochs,
        batch_size: job.batch_size,
        train_batches: job.train_batches,
        validation_batches: job.validation_batches,
        seed: job.seed,
        device: job.device.to_string(),
        threads: job.threads,
        work_dir: job.work_dir.as_str().into(),
        resume: job.resume.to_vec(),
    })
}

pub(crate) fn outcome_to_abi(o: TrainingOutcome) -> abi::TrainingOutcome {
    abi::TrainingOutcome {
        epochs_done: o.epochs_done,
        stopped: o.stopped,
        metrics: metrics_to_abi(&o.metrics),
    }
}

/// A finished training job's outcome from the plugin.
pub fn outcome_from_abi(o: abi::TrainingOutcome) -> TrainingOutcome {
    TrainingOutcome {
        epochs_done: o.epochs_done,
        stopped: o.stopped,
        metrics: metrics_from_abi(&o.metrics),
    }
}

/// A batch for the plugin.
pub fn batch_to_abi(b: &Batch) -> abi::Batch {
    let shape: Vec<i64> = b.shape.iter().map(|&d| d as i64).collect();
    abi::Batch {
        inputs: tensor_to_abi(Tensor::from_f32("inputs", shape, &b.inputs)),
        labels: tensor_to_abi(Tensor::from_i64(
            "labels",
            vec![b.labels.len() as i64],
            &b.labels,
        )),
    }
}

/// A batch from the host, checked: float32 inputs, int64 labels, one per sample.
pub(crate) fn batch_from_abi(b: &abi::Batch) -> crate::Result<Batch> {
    let bad = |why: &str| crate::Error::invalid_input(format!("host sent a bad batch: {why}"));
    if b.inputs.dtype != abi::DType::F32 || b.labels.dtype != abi::DType::I64 {
        return Err(bad("inputs must be float32 and labels int64"));
    }
    let shape: Vec<usize> = b
        .inputs
        .shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad("negative dimension")))
        .collect::<crate::Result<_>>()?;
    let count = shape.iter().product::<usize>();
    if count * 4 != b.inputs.data.len() || shape.first() != Some(&(b.labels.data.len() / 8)) {
        return Err(bad("shapes do not match the data"));
    }
    Ok(Batch {
        inputs: b
            .inputs
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        shape,
        labels: b
            .labels
            .data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
    })
}

/// A checkpoint from the plugin.
pub fn checkpoint_from_abi(c: &abi::Checkpoint) -> Checkpoint {
    Checkpoint {
        reason: c.reason,
        epochs_done: c.epochs_done,
        steps_done: c.steps_done,
        data: c.data.to_vec(),
    }
}

pub(crate) fn checkpoint_to_abi(c: Checkpoint) -> abi::Checkpoint {
    abi::Checkpoint {
        reason: c.reason,
        epochs_done: c.epochs_done,
        steps_done: c.steps_done,
        data: c.data.into(),
    }
}
