//! `POST /v1/completions`: raw prompts (a string or a list of strings), `n` choices each,
//! plain or streamed.

use super::types::{TextChoice, TextCompletion, Usage};
use super::{
    generation::{self, SamplingFields},
    sse, ApiError, ApiJson, Caller, Ctx,
};
use axum::{
    extract::State,
    response::{IntoResponse, Response},
    Json,
};
use cyxwiz_sdk::GenerateRequest;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `prompt`: a string or a list of strings (token arrays are refused).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Prompt {
    /// One prompt.
    One(String),
    /// Several prompts; each gets `n` choices.
    Many(Vec<String>),
}

/// The request body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// Model name or alias.
    pub model: String,
    /// The prompt(s).
    pub prompt: Prompt,
    /// Sampling and streaming.
    #[serde(flatten)]
    pub sampling: SamplingFields,
    /// Everything else.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: serde_json::Map<String, Value>,
}

const UNSUPPORTED: &[&str] = &[
    "echo",
    "suffix",
    "logprobs",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
];

/// Text completion, plain or streamed.
#[utoipa::path(
    post,
    path = "/v1/completions",
    operation_id = "createCompletion",
    tag = "openai",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion; with `stream: true` a `text/event-stream` of `TextCompletion` chunks ending with `data: [DONE]`",
            content((TextCompletion = "application/json"), (TextCompletion = "text/event-stream"))),
        super::openapi::ModelCallErrors,
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    generation::reject_unsupported(&req.extra, UNSUPPORTED)?;
    if req
        .extra
        .get("best_of")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        > 1
    {
        return Err(ApiError::invalid_param(
            "best_of",
            "`best_of` above 1 is not supported by this server",
        ));
    }
    let prompts = match req.prompt {
        Prompt::One(p) => vec![p],
        Prompt::Many(list) if list.is_empty() => {
            return Err(ApiError::invalid_param("prompt", "prompt list is empty"))
        }
        Prompt::Many(list) => list,
    };
    let worker = ctx.model(&caller, &req.model)?;
    let params = req.sampling.params(worker.info().context_length)?;
    let n = req.sampling.choices()? as usize;
    if prompts.len() * n > generation::MAX_N as usize * 4 {
        return Err(ApiError::invalid_param(
            "prompt",
            format!(
                "{} prompts x n={n} is more choices than this server runs per request ({})",
                prompts.len(),
                generation::MAX_N * 4
            ),
        ));
    }
    let requests: Vec<GenerateRequest> = prompts
        .iter()
        .flat_map(|p| {
            let params = params.clone();
            (0..n).map(move |i| {
                let mut params = params.clone();
                params.seed = params.seed.map(|s| s.wrapping_add(i as u64));
                GenerateRequest {
                    messages: Vec::new(),
                    prompt: p.clone(),
                    params,
                }
            })
        })
        .collect();
    let total = requests.len();
    let running = generation::start(&worker, requests, ctx.metrics.clone())?;
    let id = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
    let created = generation::unix_now();
    let model = req.model.clone();
    if !req.sampling.streaming() {
        let results = generation::collect(running, total).await?;
        let prompt_tokens: u32 = results
            .iter()
            .step_by(n)
            .map(|(_, o)| o.prompt_tokens)
            .sum();
        let cached_tokens: u32 = results
            .iter()
            .step_by(n)
            .map(|(_, o)| o.cached_tokens)
            .sum();
        let completion_tokens: u32 = results.iter().map(|(_, o)| o.completion_tokens).sum();
        let choices = results
            .into_iter()
            .enumerate()
            .map(|(index, (text, out))| TextChoice {
                index,
                text,
                logprobs: None,
                finish_reason: Some(generation::finish_reason(&out)),
            })
            .collect();
        return Ok(Json(TextCompletion {
            id,
            object: "text_completion",
            created,
            model,
            system_fingerprint: None,
            choices,
            usage: Some(Some(Usage::new(
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            ))),
        })
        .into_response());
    }
    let include_usage = req.sampling.include_usage();
    let chunk = move |choice: Option<TextChoice>, usage: Option<Usage>| {
        let chunk = TextCompletion {
            id: id.clone(),
            object: "text_completion",
            created,
            model: model.clone(),
            system_fingerprint: None,
            choices: choice.into_iter().collect(),
            usage: include_usage.then_some(usage),
        };
        serde_json::to_value(chunk).ok()
    };
    let choice = |index: usize, text: String, finish_reason: Option<&'static str>| TextChoice {
        index,
        text,
        logprobs: None,
        finish_reason,
    };
    Ok(sse::stream(
        running,
        total,
        n,
        include_usage,
        move |event| match event {
            sse::Event::Start(_) => None,
            sse::Event::Text(i, text) => chunk(Some(choice(i, text, None)), None),
            sse::Event::Finish(i, reason) => {
                chunk(Some(choice(i, String::new(), Some(reason))), None)
            }
            sse::Event::Usage(usage) => chunk(None, Some(usage)),
        },
    ))
}
