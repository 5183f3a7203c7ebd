//! `POST /v1/chat/completions`: messages through the model's chat template, plain or streamed
//! as server-sent events exactly as OpenAI sends them.

use super::types::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChunkChoice, Delta, Usage,
};
use super::{
    generation::{self, SamplingFields},
    sse, ApiError, ApiJson, Caller, Ctx,
};
use axum::{
    extract::State,
    response::{IntoResponse, Response},
    Json,
};
use cyxwiz_sdk::{ChatMessage, GenerateRequest};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A chat message's content: a string or a list of parts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts; only `text` parts are supported.
    Parts(Vec<Value>),
}

/// One message.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Message {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// Text; may be null for assistant messages.
    #[serde(default)]
    pub content: Option<Content>,
    /// Participant name (ignored).
    #[serde(default)]
    pub name: Option<String>,
}

/// The request body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequest {
    /// Model name or alias.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Sampling and streaming.
    #[serde(flatten)]
    pub sampling: SamplingFields,
    /// Everything else: unknown fields are ignored, known unsupported ones refused.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: serde_json::Map<String, Value>,
}

const UNSUPPORTED: &[&str] = &[
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "response_format",
    "audio",
    "prediction",
    "presence_penalty",
    "frequency_penalty",
];

fn messages(list: &[Message]) -> Result<Vec<ChatMessage>, ApiError> {
    if list.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "messages must hold at least one message",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                other => {
                    return Err(ApiError::invalid_param(
                        format!("messages[{i}].role"),
                        format!(
                            "role `{other}` is not supported; use system, developer, user or \
                             assistant"
                        ),
                    ))
                }
            };
            let content = match &m.content {
                None if role == "assistant" => String::new(),
                None => {
                    return Err(ApiError::invalid_param(
                        format!("messages[{i}].content"),
                        format!("a {role} message needs content"),
                    ))
                }
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for (j, part) in parts.iter().enumerate() {
                        match (
                            part.get("type").and_then(Value::as_str),
                            part.get("text").and_then(Value::as_str),
                        ) {
                            (Some("text"), Some(t)) => text.push_str(t),
                            (kind, _) => {
                                return Err(ApiError::invalid_param(
                                    format!("messages[{i}].content[{j}]"),
                                    format!(
                                        "content part type `{}` is not supported; only text",
                                        kind.unwrap_or("?")
                                    ),
                                ))
                            }
                        }
                    }
                    text
                }
            };
            Ok(ChatMessage {
                role: role.to_string(),
                content,
            })
        })
        .collect()
}

/// Chat completion, plain or streamed.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    operation_id = "createChatCompletion",
    tag = "openai",
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The completion; with `stream: true` a `text/event-stream` of `ChatCompletionChunk` events ending with `data: [DONE]`",
            content((ChatCompletion = "application/json"), (ChatCompletionChunk = "text/event-stream"))),
        super::openapi::ModelCallErrors,
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    generation::reject_unsupported(&req.extra, UNSUPPORTED)?;
    let messages = messages(&req.messages)?;
    let worker = ctx.model(&caller, &req.model)?;
    let params = req.sampling.params(worker.info().context_length)?;
    let n = req.sampling.choices()?;
    if let Some(user) = &req.sampling.user {
        tracing::debug!(%user, "chat request");
    }
    let requests = (0..n)
        .map(|i| {
            let mut params = params.clone();
            params.seed = params.seed.map(|s| s.wrapping_add(u64::from(i)));
            GenerateRequest {
                messages: messages.clone(),
                prompt: String::new(),
                params,
            }
        })
        .collect();
    let running = generation::start(&worker, requests, ctx.metrics.clone())?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = generation::unix_now();
    let model = req.model.clone();
    if !req.sampling.streaming() {
        let results = generation::collect(running, n as usize).await?;
        let prompt_tokens = results.first().map_or(0, |(_, o)| o.prompt_tokens);
        let cached_tokens = results.first().map_or(0, |(_, o)| o.cached_tokens);
        let completion_tokens: u32 = results.iter().map(|(_, o)| o.completion_tokens).sum();
        let choices = results
            .into_iter()
            .enumerate()
            .map(|(index, (content, out))| ChatChoice {
                index,
                message: AssistantMessage {
                    role: "assistant",
                    content,
                    refusal: None,
                },
                logprobs: None,
                finish_reason: generation::finish_reason(&out),
            })
            .collect();
        return Ok(Json(ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model,
            system_fingerprint: None,
            choices,
            usage: Usage::new(prompt_tokens, completion_tokens, cached_tokens),
        })
        .into_response());
    }

    let include_usage = req.sampling.include_usage();
    let chunk = move |choice: Option<ChunkChoice>, usage: Option<Usage>| {
        let chunk = ChatCompletionChunk {
            id: id.clone(),
            object: "chat.completion.chunk",
            created,
            model: model.clone(),
            system_fingerprint: None,
            choices: choice.into_iter().collect(),
            usage: include_usage.then_some(usage),
        };
        serde_json::to_value(chunk).ok()
    };
    let choice = |index: usize, delta: Delta, finish_reason: Option<&'static str>| ChunkChoice {
        index,
        delta,
        logprobs: None,
        finish_reason,
    };
    Ok(sse::stream(
        running,
        n as usize,
        n as usize,
        include_usage,
        move |event| match event {
            sse::Event::Start(i) => chunk(
                Some(choice(
                    i,
                    Delta {
                        role: Some("assistant"),
                        content: Some(String::new()),
                    },
                    None,
                )),
                None,
            ),
            sse::Event::Text(i, text) => chunk(
                Some(choice(
                    i,
                    Delta {
                        role: None,
                        content: Some(text),
                    },
                    None,
                )),
                None,
            ),
            sse::Event::Finish(i, reason) => {
                chunk(Some(choice(i, Delta::default(), Some(reason))), None)
            }
            sse::Event::Usage(usage) => chunk(None, Some(usage)),
        },
    ))
}
