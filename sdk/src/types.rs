//! Plain Rust types for plugin authors and hosts: the std mirror of the ABI data, with helpers
//! for building and checking tensors.

use crate::error::{Error, Result};
pub use cyxwiz_plugin_api::{Capabilities, DType, FinishReason};

/// A format a plugin declares: name plus extensions (lower case, no dot).
#[derive(Clone, Copy, Debug)]
pub struct Format {
    /// Format name, e.g. `onnx`.
    pub name: &'static str,
    /// File extensions, e.g. `["onnx"]`.
    pub extensions: &'static [&'static str],
}

impl Format {
    /// `Format::new("onnx", &["onnx"])`, usable in a `const`.
    pub const fn new(name: &'static str, extensions: &'static [&'static str]) -> Self {
        Self { name, extensions }
    }
}

/// What a plugin says about itself, as the host reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginMetadata {
    /// Unique plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// One-line description.
    pub description: String,
    /// Formats and their extensions.
    pub formats: Vec<(String, Vec<String>)>,
    /// Capabilities of its models.
    pub capabilities: Capabilities,
    /// The plugin-api version it was built against.
    pub interface_version: String,
}

impl PluginMetadata {
    /// Every extension the plugin handles, across formats.
    pub fn extensions(&self) -> impl Iterator<Item = &str> {
        self.formats
            .iter()
            .flat_map(|(_, exts)| exts.iter().map(String::as_str))
    }
}

/// Name, dtype and shape of a model input or output; `-1` marks a dynamic dimension.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape with `-1` for dynamic dimensions.
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// A spec from its parts; `shape` takes `-1` for dynamic dimensions
    /// (`TensorSpec::new("ids", DType::I64, [-1, -1])`).
    pub fn new(name: impl Into<String>, dtype: DType, shape: impl Into<Vec<i64>>) -> Self {
        Self {
            name: name.into(),
            dtype,
            shape: shape.into(),
        }
    }

    /// A float32 spec: `TensorSpec::f32("x", [-1, 4])`.
    pub fn f32(name: impl Into<String>, shape: impl Into<Vec<i64>>) -> Self {
        Self::new(name, DType::F32, shape)
    }

    /// An int64 spec: `TensorSpec::i64("input_ids", [-1, -1])`.
    pub fn i64(name: impl Into<String>, shape: impl Into<Vec<i64>>) -> Self {
        Self::new(name, DType::I64, shape)
    }

    /// Checks `view` against this spec: dtype, rank, fixed dimensions, byte length, and that no
    /// dimension is zero (an empty batch).
    pub fn check(&self, view: &TensorView<'_>) -> Result<()> {
        if view.dtype != self.dtype {
            return Err(Error::invalid_input(format!(
                "input `{}` must be {}, got {}",
                self.name, self.dtype, view.dtype
            )));
        }
        let rank_ok = view.shape.len() == self.shape.len();
        let dims_ok = rank_ok
            && self
                .shape
                .iter()
                .zip(view.shape)
                .all(|(want, got)| *want < 0 || want == got);
        if !dims_ok {
            return Err(Error::invalid_input(format!(
                "input `{}` must have shape {}, got {:?}",
                self.name,
                shape_pattern(&self.shape),
                view.shape
            )));
        }
        if view.shape.contains(&0) {
            return Err(Error::invalid_input(format!(
                "input `{}` is empty (shape {:?}); a batch needs at least one item",
                self.name, view.shape
            )));
        }
        view.check_len()
    }
}

/// Formats a spec shape as `[?, 3, 48, 192]`.
pub fn shape_pattern(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| {
            if *d < 0 {
                "?".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// A borrowed tensor: little-endian bytes plus dtype and shape.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// Tensor name.
    pub name: &'a str,
    /// Element type.
    pub dtype: DType,
    /// Concrete shape.
    pub shape: &'a [i64],
    /// Row-major bytes.
    pub data: &'a [u8],
}

impl TensorView<'_> {
    /// Number of elements the shape implies, or an error for negative or overflowing shapes.
    pub fn element_count(&self) -> Result<usize> {
        element_count(self.name, self.shape)
    }

    /// Checks that the byte length matches shape and dtype.
    pub fn check_len(&self) -> Result<()> {
        let size = self.dtype.size_of().ok_or_else(|| {
            Error::unsupported(format!(
                "tensor `{}` has unknown dtype code {}",
                self.name, self.dtype.0
            ))
        })?;
        let want = self
            .element_count()?
            .checked_mul(size)
            .ok_or_else(|| Error::invalid_input(format!("tensor `{}` is too large", self.name)))?;
        if want != self.data.len() {
            return Err(Error::invalid_input(format!(
                "tensor `{}` with shape {:?} and dtype {} needs {want} bytes, got {}",
                self.name,
                self.shape,
                self.dtype,
                self.data.len()
            )));
        }
        Ok(())
    }

    /// Copies the data out as `f32` (the dtype must be `float32`).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        if self.dtype != DType::F32 {
            return Err(Error::invalid_input(format!(
                "tensor `{}` must be float32, got {}",
                self.name, self.dtype
            )));
        }
        self.check_len()?;
        Ok(self
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

fn element_count(name: &str, shape: &[i64]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, d| {
        let d = usize::try_from(*d).map_err(|_| {
            Error::invalid_input(format!(
                "tensor `{name}` has a negative dimension in {shape:?}"
            ))
        })?;
        acc.checked_mul(d).ok_or_else(|| {
            Error::invalid_input(format!("tensor `{name}` shape {shape:?} overflows"))
        })
    })
}

/// An owned tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Concrete shape.
    pub shape: Vec<i64>,
    /// Row-major little-endian bytes.
    pub data: Vec<u8>,
}

impl Tensor {
    /// A float32 tensor from values; the caller guarantees `values.len() == product(shape)`.
    pub fn from_f32(name: impl Into<String>, shape: Vec<i64>, values: &[f32]) -> Self {
        Self {
            name: name.into(),
            dtype: DType::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An int64 tensor from values.
    pub fn from_i64(name: impl Into<String>, shape: Vec<i64>, values: &[i64]) -> Self {
        Self {
            name: name.into(),
            dtype: DType::I64,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A borrowed view of this tensor.
    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            name: &self.name,
            dtype: self.dtype,
            shape: &self.shape,
            data: &self.data,
        }
    }

    /// Number of elements.
    pub fn element_count(&self) -> Result<usize> {
        self.view().element_count()
    }

    /// The values as `f32` (dtype must be float32).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        self.view().to_f32_vec()
    }
}

/// What a loaded model says about itself.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ModelInfo {
    /// Tensor inputs.
    pub inputs: Vec<TensorSpec>,
    /// Tensor outputs.
    pub outputs: Vec<TensorSpec>,
    /// Memory held by the loaded model, in bytes.
    pub memory_bytes: u64,
    /// What the model can do.
    pub capabilities: Capabilities,
    /// Context length for text models, 0 otherwise.
    pub context_length: u32,
    /// Embedding width for embedding models, 0 otherwise.
    pub embedding_dim: u32,
    /// Free-form metadata.
    pub metadata: Vec<(String, String)>,
}

impl ModelInfo {
    /// The info of a tensor model: these inputs and outputs, capability
    /// [`TENSOR_INFERENCE`](Capabilities::TENSOR_INFERENCE), everything else default.
    pub fn tensors(inputs: Vec<TensorSpec>, outputs: Vec<TensorSpec>) -> Self {
        Self {
            inputs,
            outputs,
            capabilities: Capabilities::TENSOR_INFERENCE,
            ..Self::default()
        }
    }

    /// Checks a set of inputs against the declared input specs: every declared input present
    /// once, no unknown names, each matching its spec.
    pub fn check_inputs(&self, inputs: &[TensorView<'_>]) -> Result<()> {
        if inputs.is_empty() && !self.inputs.is_empty() {
            return Err(Error::invalid_input(format!(
                "no inputs given; the model expects {}",
                self.input_names()
            )));
        }
        for view in inputs {
            let spec = self
                .inputs
                .iter()
                .find(|s| s.name == view.name)
                .ok_or_else(|| {
                    Error::invalid_input(format!(
                        "unknown input `{}`; the model expects {}",
                        view.name,
                        self.input_names()
                    ))
                })?;
            spec.check(view)?;
        }
        for spec in &self.inputs {
            match inputs.iter().filter(|v| v.name == spec.name).count() {
                0 => {
                    return Err(Error::invalid_input(format!(
                        "missing input `{}` ({} {})",
                        spec.name,
                        spec.dtype,
                        shape_pattern(&spec.shape)
                    )))
                }
                1 => {}
                _ => {
                    return Err(Error::invalid_input(format!(
                        "input `{}` given more than once",
                        spec.name
                    )))
                }
            }
        }
        Ok(())
    }

    fn input_names(&self) -> String {
        let names: Vec<String> = self
            .inputs
            .iter()
            .map(|s| format!("`{}`", s.name))
            .collect();
        names.join(", ")
    }
}

/// How to load a model, besides its path.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Threads per call; 0 lets the plugin choose.
    pub threads: u32,
    /// `cpu`, `cuda:0`, ...
    pub device: String,
    /// Plugin-specific options (a JSON object).
    pub options: serde_json::Value,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            threads: 0,
            device: "cpu".to_string(),
            options: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
}

/// One chat message.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Message text.
    pub content: String,
}

/// Sampling parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Maximum tokens to generate.
    pub max_tokens: u32,
    /// Temperature; 0 is greedy.
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
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            seed: None,
            stop: Vec::new(),
        }
    }
}

/// A generation request.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GenerateRequest {
    /// Chat messages; when non-empty, `prompt` is ignored.
    pub messages: Vec<ChatMessage>,
    /// Raw prompt.
    pub prompt: String,
    /// Sampling parameters.
    pub params: SamplingParams,
}

/// How a generation ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenerateOutput {
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// Prompt tokens after templating.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// How many of `prompt_tokens` the runtime reused from an earlier request instead of
    /// computing them again (OpenAI's `usage.prompt_tokens_details.cached_tokens`); 0 when the
    /// plugin keeps no prompt cache.
    pub cached_tokens: u32,
}

/// A batch of embeddings, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// Vector width.
    pub dim: usize,
    /// `rows * dim` values.
    pub data: Vec<f32>,
    /// Tokens consumed over the batch.
    pub prompt_tokens: u32,
}

impl Embeddings {
    /// The vectors, one slice per input text.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks(self.dim.max(1))
    }
}

/// A named metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Name, e.g. `loss`.
    pub name: String,
    /// Value.
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_constructors_fill_name_dtype_and_shape() {
        let x = TensorSpec::f32("x", [-1, 4]);
        assert_eq!(
            x,
            TensorSpec {
                name: "x".into(),
                dtype: DType::F32,
                shape: vec![-1, 4]
            }
        );
        assert_eq!(TensorSpec::i64("ids", vec![2]).dtype, DType::I64);
        assert_eq!(
            TensorSpec::new("m", DType::BOOL, []).shape,
            Vec::<i64>::new()
        );
        // The constructed spec checks inputs like a hand-written one.
        let ok = Tensor::from_f32("x", vec![2, 4], &[0.0; 8]);
        assert!(x.check(&ok.view()).is_ok());
        let bad = Tensor::from_f32("x", vec![2, 3], &[0.0; 6]);
        let err = x.check(&bad.view()).unwrap_err();
        assert!(err.message.contains("[?, 4]"), "{err}");
    }

    #[test]
    fn tensor_model_info_declares_tensor_inference_only() {
        let info = ModelInfo::tensors(vec![TensorSpec::f32("x", [1])], vec![]);
        assert_eq!(info.capabilities, Capabilities::TENSOR_INFERENCE);
        assert_eq!(info.inputs.len(), 1);
        assert_eq!((info.memory_bytes, info.context_length), (0, 0));
    }

    #[test]
    fn format_new_is_const() {
        const F: Format = Format::new("scale", &["scale", "sc"]);
        assert_eq!((F.name, F.extensions), ("scale", &["scale", "sc"][..]));
    }
}
