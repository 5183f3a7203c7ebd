//! The text-embedding pipeline over any tensor plugin: a `tokenizer.json` (Hugging Face
//! `tokenizers`), a BERT-style tensor model (`input_ids`, `attention_mask`, optional
//! `token_type_ids`), pooling (mean over the attention mask, or the CLS token) and optional
//! L2 normalisation. Batches are padded to their longest member, never to a fixed length, and
//! inputs longer than the tokenizer's limit are refused.

use cyxwiz_sdk::{client::LoadedModel, DType, Embeddings, Error as PluginError, Tensor};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Average of the token vectors under the attention mask.
    Mean,
    /// The first token's vector.
    Cls,
}

/// Why a pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The tokenizer file is missing or invalid.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The pooling config could not be read.
    #[error("pooling config {path}: {message}")]
    Pooling {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The model does not have the inputs an embedding model needs.
    #[error("model is not a text-embedding model: {0}")]
    Model(String),
}

/// Options of a pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Pooling; `None` reads `1_Pooling/config.json` next to the tokenizer (mean if absent).
    pub pooling: Option<Pooling>,
    /// L2-normalise the vectors.
    pub normalize: bool,
}

/// A loaded embedding pipeline. Lives on a model worker thread.
pub struct EmbeddingPipeline {
    tokenizer: Tokenizer,
    model: LoadedModel,
    pooling: Pooling,
    normalize: bool,
    max_tokens: usize,
    type_ids: bool,
    input_ids_dtype: DType,
}

impl std::fmt::Debug for EmbeddingPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingPipeline")
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

impl Pooling {
    /// Parses `mean` or `cls`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "mean" => Some(Pooling::Mean),
            "cls" => Some(Pooling::Cls),
            _ => None,
        }
    }
}

/// Reads sentence-transformers' `1_Pooling/config.json` next to `tokenizer`, if present.
fn pooling_from_dir(tokenizer: &Path) -> Result<Pooling, PipelineError> {
    let Some(dir) = tokenizer.parent() else {
        return Ok(Pooling::Mean);
    };
    let path = dir.join("1_Pooling").join("config.json");
    if !path.is_file() {
        return Ok(Pooling::Mean);
    }
    let err = |message: String| PipelineError::Pooling {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let flag = |key: &str| json.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
    if flag("pooling_mode_mean_tokens") {
        Ok(Pooling::Mean)
    } else if flag("pooling_mode_cls_token") {
        Ok(Pooling::Cls)
    } else {
        Err(err(
            "only mean and CLS pooling are supported (pooling_mode_mean_tokens or \
             pooling_mode_cls_token)"
                .into(),
        ))
    }
}

impl EmbeddingPipeline {
    /// Wraps a loaded tensor model with the tokenizer and pooling of `options`.
    pub fn new(model: LoadedModel, options: &PipelineOptions) -> Result<Self, PipelineError> {
        let tok_err = |message: String| PipelineError::Tokenizer {
            path: options.tokenizer.clone(),
            message,
        };
        let mut tokenizer = Tokenizer::from_file(&options.tokenizer)
            .map_err(|e| tok_err(e.to_string().lines().next().unwrap_or("").to_string()))?;
        let max_tokens = tokenizer
            .get_truncation()
            .map(|t| t.max_length)
            .unwrap_or(512)
            .clamp(8, 8192);
        // The file pads to a fixed length (128 for MiniLM); `embed_ids` pads each batch to its
        // longest input instead, so the tokenizer pads nothing.
        tokenizer.with_padding(None);
        // Over-long inputs are refused with their length, not silently cut.
        tokenizer
            .with_truncation(None)
            .map_err(|e| tok_err(e.to_string()))?;
        let pooling = match options.pooling {
            Some(p) => p,
            None => pooling_from_dir(&options.tokenizer)?,
        };
        let info = model.info();
        let find = |name: &str| info.inputs.iter().find(|s| s.name == name);
        let ids = find("input_ids").ok_or_else(|| {
            PipelineError::Model(format!(
                "it has no `input_ids` input (inputs: {})",
                info.inputs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if find("attention_mask").is_none() {
            return Err(PipelineError::Model(
                "it has no `attention_mask` input".into(),
            ));
        }
        if info.outputs.is_empty() {
            return Err(PipelineError::Model("it has no outputs".into()));
        }
        Ok(Self {
            input_ids_dtype: ids.dtype,
            type_ids: find("token_type_ids").is_some(),
            tokenizer,
            model,
            pooling,
            normalize: options.normalize,
            max_tokens,
        })
    }

    /// The loaded model underneath.
    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    /// Tokenizes texts into id lists (with special tokens), for callers that batch by input.
    pub fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>, PluginError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| PluginError::invalid_input(format!("cannot tokenize: {e}")))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Refuses inputs longer than the model accepts, naming the first.
    pub fn check_lengths(&self, inputs: &[Vec<u32>]) -> Result<(), PluginError> {
        match inputs
            .iter()
            .enumerate()
            .find(|(_, ids)| ids.len() > self.max_tokens)
        {
            Some((i, ids)) => Err(PluginError::invalid_input(format!(
                "input {i} has {} tokens; this model accepts at most {}",
                ids.len(),
                self.max_tokens
            ))),
            None => Ok(()),
        }
    }

    /// Embeds pre-tokenized inputs (each already with its special tokens), one vector each.
    pub fn embed_ids(&self, inputs: &[Vec<u32>]) -> Result<Embeddings, PluginError> {
        if inputs.is_empty() {
            return Ok(Embeddings {
                dim: 0,
                data: Vec::new(),
                prompt_tokens: 0,
            });
        }
        self.check_lengths(inputs)?;
        let batch = inputs.len();
        let seq = inputs.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut ids = vec![0i64; batch * seq];
        let mut mask = vec![0i64; batch * seq];
        let mut tokens = 0u32;
        for (row, input) in inputs.iter().enumerate() {
            for (col, id) in input.iter().enumerate() {
                ids[row * seq + col] = i64::from(*id);
                mask[row * seq + col] = 1;
                tokens += 1;
            }
        }
        let shape = vec![batch as i64, seq as i64];
        let mut tensors = vec![
            self.ids_tensor("input_ids", &shape, &ids),
            Tensor::from_i64("attention_mask", shape.clone(), &mask),
        ];
        if self.type_ids {
            tensors.push(Tensor::from_i64(
                "token_type_ids",
                shape.clone(),
                &vec![0i64; batch * seq],
            ));
        }
        let views: Vec<_> = tensors.iter().map(Tensor::view).collect();
        let outputs = self.model.infer(&views)?;
        let hidden = outputs
            .first()
            .ok_or_else(|| PluginError::runtime("the embedding model returned no outputs"))?;
        let values = hidden.to_f32_vec()?;
        let data = self.pool(&hidden.shape, &values, &mask, batch, seq)?;
        let dim = data.len() / batch;
        Ok(Embeddings {
            dim,
            data,
            prompt_tokens: tokens,
        })
    }

    fn ids_tensor(&self, name: &str, shape: &[i64], ids: &[i64]) -> Tensor {
        if self.input_ids_dtype == DType::I32 {
            Tensor {
                name: name.to_string(),
                dtype: DType::I32,
                shape: shape.to_vec(),
                data: ids.iter().flat_map(|v| (*v as i32).to_le_bytes()).collect(),
            }
        } else {
            Tensor::from_i64(name, shape.to_vec(), ids)
        }
    }

    /// Pools `[batch, seq, dim]` token vectors (or passes `[batch, dim]` through), then
    /// normalises.
    fn pool(
        &self,
        shape: &[i64],
        values: &[f32],
        mask: &[i64],
        batch: usize,
        seq: usize,
    ) -> Result<Vec<f32>, PluginError> {
        let mut out = match shape {
            [b, _] if *b as usize == batch => values.to_vec(),
            [b, s, d] if *b as usize == batch && *s as usize == seq => {
                let dim = *d as usize;
                let mut out = vec![0f32; batch * dim];
                for row in 0..batch {
                    let dst = &mut out[row * dim..(row + 1) * dim];
                    match self.pooling {
                        Pooling::Cls => {
                            dst.copy_from_slice(&values[row * seq * dim..row * seq * dim + dim])
                        }
                        Pooling::Mean => {
                            let mut count = 0f32;
                            for col in 0..seq {
                                if mask[row * seq + col] == 0 {
                                    continue;
                                }
                                count += 1.0;
                                let src = &values[(row * seq + col) * dim..][..dim];
                                for (a, b) in dst.iter_mut().zip(src) {
                                    *a += b;
                                }
                            }
                            let count = count.max(1.0);
                            dst.iter_mut().for_each(|v| *v /= count);
                        }
                    }
                }
                out
            }
            other => {
                return Err(PluginError::runtime(format!(
                    "the embedding model's first output has shape {other:?}; expected \
                     [batch, seq, dim] or [batch, dim]"
                )))
            }
        };
        if self.normalize {
            let dim = out.len() / batch.max(1);
            for row in out.chunks_mut(dim.max(1)) {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        Ok(out)
    }
}
