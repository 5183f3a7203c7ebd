//! The text-embedding pipeline over any tensor plugin: a `tokenizer.json` (Hugging Face
//! `tokenizers`), a BERT-style tensor model (`input_ids`, `attention_mask`, optional
//! `token_type_ids`), pooling (mean over the attention mask, or the CLS token) and optional
//! L2 normalisation. Batches are padded to their longest member, never to a fixed length, and
//! inputs longer than the tokenizer's limit are refused.
//!
//! Memory is bounded per run, not per request: inputs are sorted by length and cut into runs
//! of at most `max_batch_tokens` padded tokens (rows times the longest row), so a request of
//! thousands of inputs never becomes one giant tensor. Before tokenizing, a text with more
//! bytes than the token limit could plausibly hold ([`MAX_BYTES_PER_TOKEN`] per token) is
//! refused, and token-array inputs are checked against the vocabulary.

use super::backend::Backend;
use cyxwiz_plugin_host::LoadedModel;
use cyxwiz_sdk::{DType, Embeddings, Error as PluginError, Tensor};
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

/// Bytes of text per token beyond which a text is refused before tokenizing: real text
/// averages 3 to 6 bytes per token; 64 leaves room for long words and multi-byte scripts.
pub const MAX_BYTES_PER_TOKEN: usize = 64;

/// A loaded embedding pipeline. Lives on a model worker thread.
pub struct EmbeddingPipeline<M = LoadedModel> {
    tokenizer: Tokenizer,
    model: M,
    pooling: Pooling,
    normalize: bool,
    max_tokens: usize,
    type_ids: bool,
    input_ids_dtype: DType,
    vocab: usize,
}

impl<M> std::fmt::Debug for EmbeddingPipeline<M> {
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

/// Cuts inputs of `lengths` tokens into runs of at most `budget` padded tokens (rows times the
/// longest row; an input longer than the budget runs alone). Inputs are taken longest first so
/// that rows of a run have similar lengths and little padding; each run lists input indices.
pub fn plan_runs(lengths: &[usize], budget: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0;
    for i in order {
        let len = lengths[i].max(1);
        // Sorted longest first: the run's longest row is its first.
        let width = longest.max(len);
        if !current.is_empty() && (current.len() + 1).saturating_mul(width) > budget {
            runs.push(std::mem::take(&mut current));
            longest = 0;
        }
        longest = longest.max(len);
        current.push(i);
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

impl<M: Backend> EmbeddingPipeline<M> {
    /// Wraps a loaded tensor model with the tokenizer and pooling of `options`.
    pub fn new(model: M, options: &PipelineOptions) -> Result<Self, PipelineError> {
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
            vocab: tokenizer.get_vocab_size(true),
            tokenizer,
            model,
            pooling,
            normalize: options.normalize,
            max_tokens,
        })
    }

    /// The loaded model underneath.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The most tokens one input may have.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokenizes texts into id lists (with special tokens), for callers that batch by input.
    /// A text longer than [`MAX_BYTES_PER_TOKEN`] bytes per allowed token is refused first,
    /// without spending the tokenizer's time on it.
    pub fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>, PluginError> {
        let max_bytes = self.max_tokens.saturating_mul(MAX_BYTES_PER_TOKEN);
        if let Some((i, text)) = texts.iter().enumerate().find(|(_, t)| t.len() > max_bytes) {
            return Err(PluginError::invalid_input(format!(
                "input {i} has {} bytes; this model reads at most {} tokens, so texts are \
                 refused beyond {max_bytes} bytes",
                text.len(),
                self.max_tokens
            )));
        }
        // One text at a time on this thread: `encode_batch` hands every call to rayon's pool,
        // whose threads then compete with the runtime's for the cores, for texts that take
        // microseconds each.
        texts
            .iter()
            .map(|text| {
                self.tokenizer
                    .encode_fast(text.as_str(), true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| PluginError::invalid_input(format!("cannot tokenize: {e}")))
            })
            .collect()
    }

    /// Refuses inputs longer than the model accepts, and token ids outside the vocabulary,
    /// naming the first.
    pub fn check_lengths<T: AsRef<[u32]>>(&self, inputs: &[T]) -> Result<(), PluginError> {
        for (i, ids) in inputs.iter().map(AsRef::as_ref).enumerate() {
            if ids.len() > self.max_tokens {
                return Err(PluginError::invalid_input(format!(
                    "input {i} has {} tokens; this model accepts at most {}",
                    ids.len(),
                    self.max_tokens
                )));
            }
            let outside = |id: &&u32| self.vocab > 0 && **id as usize >= self.vocab;
            if let Some(id) = ids.iter().find(outside) {
                return Err(PluginError::invalid_input(format!(
                    "input {i} holds token id {id}; this model's vocabulary has {} tokens \
                     (ids 0 to {})",
                    self.vocab,
                    self.vocab.saturating_sub(1)
                )));
            }
        }
        Ok(())
    }

    /// Embeds pre-tokenized inputs (each already with its special tokens), one vector each,
    /// running the model on at most `max_batch_tokens` padded tokens at a time.
    pub fn embed_ids(
        &self,
        inputs: &[&[u32]],
        max_batch_tokens: usize,
    ) -> Result<Embeddings, PluginError> {
        self.check_lengths(inputs)?;
        let lengths: Vec<usize> = inputs.iter().map(|ids| ids.len()).collect();
        let mut dim = 0;
        let mut data: Vec<f32> = Vec::new();
        let mut prompt_tokens = 0;
        for run in plan_runs(&lengths, max_batch_tokens.max(1)) {
            let rows: Vec<&[u32]> = run.iter().map(|&i| inputs[i]).collect();
            let out = self.embed_run(&rows)?;
            if data.is_empty() {
                dim = out.dim;
                data = vec![0f32; inputs.len() * dim];
            }
            if out.dim != dim {
                return Err(PluginError::runtime(format!(
                    "the embedding model made {}-dimensional vectors, then {dim}",
                    out.dim
                )));
            }
            for (row, &i) in out.data.chunks_exact(dim.max(1)).zip(&run) {
                data[i * dim..(i + 1) * dim].copy_from_slice(row);
            }
            prompt_tokens += out.prompt_tokens;
        }
        Ok(Embeddings {
            dim,
            data,
            prompt_tokens,
        })
    }

    /// One run of the model over `inputs`, padded to the longest.
    fn embed_run(&self, inputs: &[&[u32]]) -> Result<Embeddings, PluginError> {
        let batch = inputs.len();
        let seq = inputs.iter().map(|i| i.len()).max().unwrap_or(0).max(1);
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::models::worker::tests::{fake, Calls, Fake};

    /// A word-level tokenizer (`a` = 1, `b` = 2, `c` = 3, no special tokens) reading at most 16
    /// tokens, written into `dir`.
    pub(crate) fn tokenizer(dir: &Path) -> PathBuf {
        let path = dir.join("tokenizer.json");
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": {"direction": "Right", "max_length": 16, "strategy": "LongestFirst", "stride": 0},
            "padding": null,
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "a": 1, "b": 2, "c": 3}, "unk_token": "[UNK]"}
        });
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }

    /// A pipeline over [`Fake`] (mean pooling, no normalisation) with the fake's call log,
    /// the receiver told when a call holding token id 3 starts, and the gate that releases it.
    pub(crate) fn pipeline(
        dir: &Path,
    ) -> (
        EmbeddingPipeline<Fake>,
        Calls,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (model, calls, started, gate) = fake(
            &[("input_ids", DType::I64), ("attention_mask", DType::I64)],
            3.0,
        );
        let options = PipelineOptions {
            tokenizer: tokenizer(dir),
            pooling: Some(Pooling::Mean),
            normalize: false,
        };
        let pipeline = EmbeddingPipeline::new(model, &options).unwrap();
        (pipeline, calls, started, gate)
    }

    #[test]
    fn runs_stay_within_the_token_budget_and_cover_every_input_once() {
        // The finding: 2048 inputs of 128 tokens became one [2048, 128] batch.
        let runs = plan_runs(&[128; 2048], 8192);
        assert_eq!(runs.len(), 32);
        assert!(runs.iter().all(|r| r.len() == 64));
        let lengths = [300, 5, 7, 5, 120, 1, 0, 64];
        for budget in [1, 100, 256, 10_000] {
            let runs = plan_runs(&lengths, budget);
            let mut seen: Vec<usize> = runs.iter().flatten().copied().collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
            for run in &runs {
                let longest = run.iter().map(|&i| lengths[i].max(1)).max().unwrap();
                assert!(
                    run.len() == 1 || run.len() * longest <= budget,
                    "budget {budget}: {run:?}"
                );
            }
        }
        assert_eq!(plan_runs(&[], 10), Vec::<Vec<usize>>::new());
    }

    #[test]
    fn a_huge_request_is_embedded_in_bounded_runs_with_the_same_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let (pipeline, calls, _, _) = pipeline(dir.path());
        // 2048 inputs of 1 to 16 tokens of ids 1 and 2.
        let inputs: Vec<Vec<u32>> = (0..2048)
            .map(|i| (0..1 + i % 16).map(|j| 1 + ((i + j) % 2) as u32).collect())
            .collect();
        let refs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
        let whole = pipeline.embed_ids(&refs, usize::MAX).unwrap();
        assert_eq!(calls.lock().unwrap().len(), 1);
        calls.lock().unwrap().clear();
        let bounded = pipeline.embed_ids(&refs, 64).unwrap();
        let shapes: Vec<Vec<i64>> = calls.lock().unwrap().iter().map(|c| c.0.clone()).collect();
        assert!(shapes.len() > 100, "{} runs", shapes.len());
        for shape in &shapes {
            assert!(shape[0] * shape[1] <= 64, "a run of shape {shape:?}");
        }
        assert_eq!(bounded.dim, 2);
        assert_eq!(bounded.prompt_tokens, whole.prompt_tokens);
        assert_eq!(bounded.data, whole.data, "same vectors, same order");
        // Input 5 is six tokens alternating from id 2: mean 1.5.
        assert_eq!(&bounded.data[10..12], &[1.5, 1.0]);
    }

    #[test]
    fn oversized_texts_and_foreign_token_ids_are_refused_before_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let (pipeline, calls, _, _) = pipeline(dir.path());
        assert_eq!(
            pipeline.tokenize(&["a b c".into()]).unwrap(),
            vec![vec![1, 2, 3]]
        );
        let long = "a".repeat(16 * MAX_BYTES_PER_TOKEN + 1);
        let e = pipeline.tokenize(&["a".into(), long]).unwrap_err();
        assert_eq!(
            e.message,
            "input 1 has 1025 bytes; this model reads at most 16 tokens, so texts are refused \
             beyond 1024 bytes"
        );
        assert_eq!(e.kind, cyxwiz_sdk::ErrorKind::INVALID_INPUT);
        let e = pipeline.embed_ids(&[&[1, 2], &[1, 4]], 100).unwrap_err();
        assert_eq!(
            e.message,
            "input 1 holds token id 4; this model's vocabulary has 4 tokens (ids 0 to 3)"
        );
        let e = pipeline.embed_ids(&[&[1; 17]], 100).unwrap_err();
        assert!(e.message.contains("17 tokens"), "{}", e.message);
        assert!(calls.lock().unwrap().is_empty());
    }
}
