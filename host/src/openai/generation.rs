//! What chat and text completions share: the sampling parameters and their checks, running
//! several choices at once on an LLM deployment (they join the model's continuous batches),
//! and reading their pieces from the worker's one bounded channel. Dropping the
//! [`Generation`] cancels every choice still generating.

use super::ApiError;
use crate::{
    metrics::Metrics,
    models::{
        worker::{Piece as WorkerPiece, Pieces},
        ModelWorker, WorkerError,
    },
};
use cyxwiz_sdk::{FinishReason, GenerateOutput, GenerateRequest, SamplingParams};
use serde::Deserialize;
use std::{sync::Arc, time::Instant};
use utoipa::ToSchema;

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Up to four.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a final chunk with usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// The sampling fields chat and completions share (OpenAI's, plus llama.cpp's `top_k`,
/// `min_p` and `repeat_penalty`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct SamplingFields {
    /// Tokens to generate at most.
    pub max_tokens: Option<u32>,
    /// Newer name of `max_tokens` (chat).
    pub max_completion_tokens: Option<u32>,
    /// 0..=2; 0 is greedy.
    pub temperature: Option<f32>,
    /// 0..=1.
    pub top_p: Option<f32>,
    /// Reproducible sampling.
    pub seed: Option<i64>,
    /// Stop strings.
    pub stop: Option<Stop>,
    /// Choices to generate.
    pub n: Option<u32>,
    /// Stream the answer.
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// End-user id (logged).
    pub user: Option<String>,
    /// Top-k (extension).
    pub top_k: Option<u32>,
    /// Min-p (extension).
    pub min_p: Option<f32>,
    /// Repetition penalty (extension).
    pub repeat_penalty: Option<f32>,
}

/// Most choices one request may ask for.
pub const MAX_N: u32 = 8;

impl SamplingFields {
    /// Checks the values and builds the plugin's parameters, with `max_tokens` bounded by
    /// the model's context.
    pub fn params(&self, context: u32) -> Result<SamplingParams, ApiError> {
        let defaults = SamplingParams::default();
        let max_tokens = match (self.max_completion_tokens, self.max_tokens) {
            (Some(m), _) => ("max_completion_tokens", Some(m)),
            (None, m) => ("max_tokens", m),
        };
        let limit = if context > 0 { context } else { 4096 };
        let max = match max_tokens {
            (name, Some(0)) => {
                return Err(ApiError::invalid_param(
                    name,
                    format!("{name} must be at least 1"),
                ))
            }
            (name, Some(m)) if m > limit => {
                return Err(ApiError::invalid_param(
                    name,
                    format!("{name} is {m}, but this model's context holds {limit} tokens"),
                ))
            }
            (_, Some(m)) => m,
            (_, None) => limit,
        };
        let temperature = self.temperature.unwrap_or(defaults.temperature);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid_param(
                "temperature",
                format!("temperature must be between 0 and 2, got {temperature}"),
            ));
        }
        let top_p = self.top_p.unwrap_or(defaults.top_p);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid_param(
                "top_p",
                format!("top_p must be in (0, 1], got {top_p}"),
            ));
        }
        let min_p = self.min_p.unwrap_or(defaults.min_p);
        if !(0.0..=1.0).contains(&min_p) {
            return Err(ApiError::invalid_param(
                "min_p",
                format!("min_p must be between 0 and 1, got {min_p}"),
            ));
        }
        let repeat_penalty = self.repeat_penalty.unwrap_or(defaults.repeat_penalty);
        if !(repeat_penalty > 0.0 && repeat_penalty <= 10.0) {
            return Err(ApiError::invalid_param(
                "repeat_penalty",
                format!("repeat_penalty must be in (0, 10], got {repeat_penalty}"),
            ));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(list)) => list.clone(),
        };
        if stop.len() > 4 {
            return Err(ApiError::invalid_param(
                "stop",
                format!("at most 4 stop sequences are allowed, got {}", stop.len()),
            ));
        }
        if stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid_param(
                "stop",
                "stop sequences must not be empty",
            ));
        }
        Ok(SamplingParams {
            max_tokens: max,
            temperature,
            top_p,
            top_k: self.top_k.unwrap_or(defaults.top_k),
            min_p,
            repeat_penalty,
            seed: self.seed.map(|s| s as u64),
            stop,
        })
    }

    /// Choices asked for, checked.
    pub fn choices(&self) -> Result<u32, ApiError> {
        match self.n.unwrap_or(1) {
            n @ 1..=MAX_N => Ok(n),
            n => Err(ApiError::invalid_param(
                "n",
                format!("n must be between 1 and {MAX_N}, got {n}"),
            )),
        }
    }

    /// Whether to stream.
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a streamed answer ends with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

/// Known OpenAI request fields this node does not implement: asking for them with a
/// non-default value is a 400 naming them, never silently ignored.
pub fn reject_unsupported(
    extra: &serde_json::Map<String, serde_json::Value>,
    names: &[&str],
) -> Result<(), ApiError> {
    use serde_json::Value;
    for name in names {
        let Some(value) = extra.get(*name) else {
            continue;
        };
        let harmless = match value {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => {
                o.is_empty() || o.get("type").and_then(Value::as_str) == Some("text")
            }
            Value::String(s) => s == "text" || s == "none" || s == "auto",
        };
        if !harmless {
            return Err(ApiError::invalid_param(
                *name,
                format!("`{name}` is not supported by this server"),
            ));
        }
    }
    Ok(())
}

/// An event of a multi-choice generation.
#[derive(Debug)]
pub enum Piece {
    /// Text of choice `index`.
    Text(usize, String),
    /// Choice `index` ended.
    Done(usize, Result<GenerateOutput, ApiError>),
}

/// The OpenAI name of a finish reason.
pub fn finish_reason(output: &GenerateOutput) -> &'static str {
    if output.finish_reason == FinishReason::LENGTH {
        "length"
    } else {
        "stop"
    }
}

/// A running multi-choice generation, read straight from the model worker's bounded channel
/// (no relay task in between). It keeps the metrics: time to first token per choice, tokens
/// generated (counted also for choices cut short when it is dropped). Dropping it cancels
/// every choice still generating.
pub struct Generation {
    pieces: Pieces,
    /// Pieces received per choice, and whether the choice ended.
    counts: Vec<(u64, bool)>,
    metrics: Arc<Metrics>,
    model: String,
    started: Instant,
}

/// Starts one generation per request (choice) on `worker`.
pub fn start(
    worker: &Arc<ModelWorker>,
    requests: Vec<GenerateRequest>,
    metrics: Arc<Metrics>,
) -> Result<Generation, ApiError> {
    let choices = requests.len();
    let started = Instant::now();
    let pieces = worker.generate(requests)?;
    Ok(Generation {
        pieces,
        counts: vec![(0, false); choices],
        metrics,
        model: worker.name().to_string(),
        started,
    })
}

impl Generation {
    /// The next piece of any choice; None once every choice ended. If the workers stop
    /// before a choice ended, that choice ends with their error.
    pub async fn next(&mut self) -> Option<Piece> {
        match self.pieces.recv().await {
            Some(WorkerPiece::Text(i, text)) => {
                let count = &mut self.counts.get_mut(i)?.0;
                if *count == 0 {
                    self.metrics
                        .time_to_first_token(&self.model, self.started.elapsed());
                }
                *count += 1;
                Some(Piece::Text(i, text))
            }
            Some(WorkerPiece::Done(i, result)) => {
                self.counts.get_mut(i)?.1 = true;
                let result = result.map_err(|e| ApiError::from(WorkerError::Model(e)));
                if let Ok(output) = &result {
                    self.metrics
                        .tokens_generated(&self.model, u64::from(output.completion_tokens));
                    self.metrics.prompt_processed(
                        &self.model,
                        output.prompt_tokens,
                        output.cached_tokens,
                    );
                }
                Some(Piece::Done(i, result))
            }
            None => {
                let i = self.counts.iter().position(|(_, done)| !done)?;
                self.counts[i].1 = true;
                let stopped = WorkerError::Stopped(self.model.clone());
                Some(Piece::Done(i, Err(ApiError::from(stopped))))
            }
        }
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        let cut_short: u64 = self
            .counts
            .iter()
            .filter(|(_, done)| !done)
            .map(|(n, _)| n)
            .sum();
        if cut_short > 0 {
            self.metrics.tokens_generated(&self.model, cut_short);
        }
    }
}

/// The text and outcome of every choice, for non-streamed answers.
pub async fn collect(
    mut generation: Generation,
    choices: usize,
) -> Result<Vec<(String, GenerateOutput)>, ApiError> {
    let mut texts = vec![String::new(); choices];
    let mut outputs: Vec<Option<GenerateOutput>> = vec![None; choices];
    while let Some(piece) = generation.next().await {
        match piece {
            Piece::Text(i, text) => texts[i].push_str(&text),
            Piece::Done(i, result) => outputs[i] = Some(result?),
        }
        if outputs.iter().all(Option::is_some) {
            break;
        }
    }
    texts
        .into_iter()
        .zip(outputs)
        .map(|(t, o)| {
            o.map(|o| (t, o))
                .ok_or_else(|| ApiError::internal("a generation ended without a result"))
        })
        .collect()
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
