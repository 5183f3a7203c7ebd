//! Train → serve: loads a weights file a training job left (`weights.safetensors`: the
//! model tensors under their spec names and the spec under `cyxwiz.model`) and runs it in
//! evaluation mode. Everything is checked before the tensors are read: the file's size, its
//! header, the spec (as for training), and that the file is no larger than the spec's
//! tensors (and at most an optimizer's state) need; then every tensor's name and shape.

use crate::net::{runtime, Graph, Mode};
use crate::train::{self, within};
use candle_core::{Device, Tensor};
use cyxwiz_sdk::training::{Loss, ModelSpec, TensorFile, MODEL_KEY, STATE_PREFIX};
use cyxwiz_sdk::{
    serde_json, Error, LoadOptions, Model, ModelInfo, Result, TensorSpec, TensorView,
};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// The largest weights file read.
pub(crate) const MAX_FILE_BYTES: u64 = 4 << 30;
/// The most samples one call may carry.
pub(crate) const MAX_BATCH: usize = 4096;
/// The largest safetensors header read.
const MAX_HEADER_BYTES: u64 = cyxwiz_sdk::training::tensors::MAX_HEADER_BYTES;

/// A trained network, ready to serve.
pub struct TrainedModel {
    graph: Graph,
    params: Vec<Tensor>,
    running: Vec<Tensor>,
    info: ModelInfo,
    pool: Option<Arc<rayon::ThreadPool>>,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("{}: {why}", path.display()))
}

/// Reads the file's header and returns the spec it names, the header length and the file.
fn read_header(path: &Path, file: &mut std::fs::File, len: u64) -> Result<(ModelSpec, u64)> {
    let mut head = [0u8; 8];
    file.read_exact(&mut head)
        .map_err(|_| bad(path, "truncated: shorter than a safetensors header"))?;
    let header_len = u64::from_le_bytes(head);
    if header_len > MAX_HEADER_BYTES || header_len > len.saturating_sub(8) {
        return Err(bad(
            path,
            format!("not a safetensors file: header length {header_len} does not fit the {len}-byte file"),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(path, format!("cannot read the header: {e}")))?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|e| {
        bad(
            path,
            format!("not a safetensors file: header is not JSON: {e}"),
        )
    })?;
    let spec = header
        .get("__metadata__")
        .and_then(|m| m.get(MODEL_KEY))
        .and_then(|s| s.as_str())
        .ok_or_else(|| {
            bad(
                path,
                format!("no `{MODEL_KEY}` metadata: not a weights file written by a training job"),
            )
        })?;
    let spec: ModelSpec = serde_json::from_str(spec).map_err(|e| {
        bad(
            path,
            format!("`{MODEL_KEY}` is not a valid model spec: {e}"),
        )
    })?;
    Ok((spec, header_len))
}

impl TrainedModel {
    /// Loads and checks the weights file at `path` (see the module doc).
    pub(crate) fn load(path: &Path, options: &LoadOptions) -> Result<Self> {
        if !matches!(options.device.as_str(), "" | "cpu") {
            return Err(Error::unsupported(format!(
                "train-candle runs on the CPU only; device {:?} is not available",
                options.device
            )));
        }
        let meta = std::fs::metadata(path).map_err(|e| Error::from_io(path, &e))?;
        if meta.is_dir() {
            return Err(bad(
                path,
                "is a directory, expected a .safetensors weights file",
            ));
        }
        let len = meta.len();
        if len > MAX_FILE_BYTES {
            return Err(bad(
                path,
                format!("{len} bytes is larger than the {MAX_FILE_BYTES}-byte limit"),
            ));
        }
        let mut file = std::fs::File::open(path).map_err(|e| Error::from_io(path, &e))?;
        let (spec, header_len) = read_header(path, &mut file, len)?;
        let graph = Graph::new(&spec).map_err(|e| bad(path, e.message))?;
        // The model's tensors, plus at most two optimizer tensors per parameter (a checkpoint).
        let elements = |list: &[(String, Vec<usize>)]| {
            list.iter()
                .map(|(_, s)| s.iter().product::<usize>() as u64)
                .sum::<u64>()
        };
        let needed =
            8 + header_len + 4 * (3 * elements(&graph.trainable) + elements(&graph.running));
        if len > needed {
            return Err(bad(
                path,
                format!("{len} bytes is more than its model's tensors need ({needed})"),
            ));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        std::fs::File::open(path)
            .and_then(|f| f.take(len).read_to_end(&mut bytes))
            .map_err(|e| Error::from_io(path, &e))?;
        let tensors = TensorFile::decode(&bytes).map_err(|e| bad(path, e.message))?;
        let fetch = |list: &[(String, Vec<usize>)]| -> Result<Vec<Tensor>> {
            list.iter()
                .map(|(name, shape)| {
                    let t = tensors
                        .expect(name, shape)
                        .map_err(|e| bad(path, e.message))?;
                    Tensor::from_slice(&t.data, shape.as_slice(), &Device::Cpu).map_err(runtime)
                })
                .collect()
        };
        let params = fetch(&graph.trainable)?;
        let running = fetch(&graph.running)?;
        let known = |name: &str| {
            name.starts_with(STATE_PREFIX)
                || graph
                    .trainable
                    .iter()
                    .chain(&graph.running)
                    .any(|(n, _)| n == name)
        };
        if let Some(extra) = tensors.tensors.iter().find(|t| !known(&t.name)) {
            return Err(bad(
                path,
                format!("tensor {} is not part of its model", extra.name),
            ));
        }
        let info = info(
            &spec,
            4 * (elements(&graph.trainable) + elements(&graph.running)),
        );
        Ok(Self {
            graph,
            params,
            running,
            info,
            pool: train::pool(options.threads)?,
        })
    }

    fn run(&self, values: &[f32], shape: &[usize]) -> Result<Vec<cyxwiz_sdk::Tensor>> {
        let x = self.graph.input(values, shape)?;
        let out =
            self.graph
                .forward(x, &self.params, &self.running, Mode::Eval, &mut Vec::new())?;
        let probabilities = match self.graph.spec.loss {
            Loss::CrossEntropy => crate::ops::softmax(&out).map_err(runtime)?,
            Loss::Mse => out.clone(),
        };
        let (n, classes) = (shape[0] as i64, self.graph.spec.classes as i64);
        let flat = |t: &Tensor| {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(runtime)
        };
        Ok(vec![
            cyxwiz_sdk::Tensor::from_f32("logits", vec![n, classes], &flat(&out)?),
            cyxwiz_sdk::Tensor::from_f32("probabilities", vec![n, classes], &flat(&probabilities)?),
        ])
    }
}

/// The served model's interface: `input [-1, ...input_shape]` to `logits` and
/// `probabilities`, both `[-1, classes]`.
fn info(spec: &ModelSpec, memory_bytes: u64) -> ModelInfo {
    let input: Vec<i64> = std::iter::once(-1)
        .chain(spec.input_shape.iter().map(|&d| d as i64))
        .collect();
    let out = [-1, spec.classes as i64];
    let mut info = ModelInfo::tensors(
        vec![TensorSpec::f32("input", input)],
        vec![
            TensorSpec::f32("logits", out),
            TensorSpec::f32("probabilities", out),
        ],
    );
    info.memory_bytes = memory_bytes;
    info.metadata = vec![
        ("parameters".into(), spec.parameter_count().to_string()),
        ("layers".into(), spec.layers.len().to_string()),
        (
            "loss".into(),
            match spec.loss {
                Loss::CrossEntropy => "cross_entropy",
                Loss::Mse => "mse",
            }
            .into(),
        ),
    ];
    info
}

impl Model for TrainedModel {
    fn info(&self) -> Result<ModelInfo> {
        Ok(self.info.clone())
    }

    fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<cyxwiz_sdk::Tensor>> {
        self.info.check_inputs(inputs)?;
        let view = &inputs[0];
        let shape: Vec<usize> = view.shape.iter().map(|&d| d as usize).collect();
        if shape[0] > MAX_BATCH {
            return Err(Error::invalid_input(format!(
                "input `input` has a batch of {}, at most {MAX_BATCH} samples per call",
                shape[0]
            )));
        }
        let values = view.to_f32_vec()?;
        within(self.pool.as_deref(), || self.run(&values, &shape))
    }
}

#[cfg(test)]
mod tests;
