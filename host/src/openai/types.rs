//! The response bodies of the `/v1` API as types: what handlers serialise and what
//! `/openapi.json` describes, so the document cannot drift from the answers.

use serde::Serialize;
use utoipa::ToSchema;

/// Token counts.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Usage {
    /// Tokens in the prompt(s), after templating.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// The sum.
    pub total_tokens: u32,
    /// Where the prompt tokens came from.
    pub prompt_tokens_details: PromptTokensDetails,
}

/// The breakdown of `prompt_tokens`, as OpenAI gives it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens the runtime reused from an earlier request (its prompt cache) instead of
    /// computing them again; 0 for runtimes without one.
    pub cached_tokens: u32,
}

impl Usage {
    /// Usage from prompt, completion and cached prompt counts.
    pub fn new(prompt_tokens: u32, completion_tokens: u32, cached_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }
}

/// The assistant's message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// The generated text.
    pub content: String,
    /// Always null.
    pub refusal: Option<String>,
}

/// One choice of a chat completion.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatChoice {
    /// Choice index.
    pub index: usize,
    /// The answer.
    pub message: AssistantMessage,
    /// Always null (log probabilities are not supported).
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
}

/// `chat.completion`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as asked.
    pub model: String,
    /// Always null.
    pub system_fingerprint: Option<String>,
    /// The choices.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Usage,
}

/// The change a chunk brings to a choice.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Delta {
    /// `assistant` in a choice's first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// New text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice in a chunk.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChunkChoice {
    /// Choice index.
    pub index: usize,
    /// The change.
    pub delta: Delta,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    /// Null until the choice's last chunk.
    pub finish_reason: Option<&'static str>,
}

/// `chat.completion.chunk`: one server-sent event of a streamed chat completion.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatCompletionChunk {
    /// The same for every chunk of a stream.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as asked.
    pub model: String,
    /// Always null.
    pub system_fingerprint: Option<String>,
    /// Empty in the final usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Only with `stream_options.include_usage`: null except in the final chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Usage>)]
    pub usage: Option<Option<Usage>>,
}

/// One choice of a text completion (also a streamed chunk's choice).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TextChoice {
    /// Choice index (prompt index × n + choice).
    pub index: usize,
    /// The generated text (a piece of it when streamed).
    pub text: String,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    /// `stop` or `length`; null in streamed chunks until the last.
    pub finish_reason: Option<&'static str>,
}

/// `text_completion` (also each streamed chunk).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TextCompletion {
    /// `cmpl-…`.
    pub id: String,
    /// `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as asked.
    pub model: String,
    /// Always null.
    pub system_fingerprint: Option<String>,
    /// The choices.
    pub choices: Vec<TextChoice>,
    /// Token counts (streams: only in the final chunk, when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Usage>)]
    pub usage: Option<Option<Usage>>,
}

/// A vector: floats, or base64 of little-endian float32.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Vector {
    /// `encoding_format = "float"`.
    Float(Vec<f32>),
    /// `encoding_format = "base64"`.
    Base64(String),
}

/// One embedding.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Embedding {
    /// `embedding`.
    pub object: &'static str,
    /// Input index.
    pub index: usize,
    /// The vector.
    pub embedding: Vector,
}

/// Embedding token counts.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    /// Tokens in the inputs.
    pub prompt_tokens: u32,
    /// The same.
    pub total_tokens: u32,
}

/// The answer of `/v1/embeddings`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingList {
    /// `list`.
    pub object: &'static str,
    /// One per input, in order.
    pub data: Vec<Embedding>,
    /// The model name as asked.
    pub model: String,
    /// Token counts.
    pub usage: EmbeddingUsage,
}

/// A served model.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Model {
    /// Name or alias.
    pub id: String,
    /// `model`.
    pub object: &'static str,
    /// Unix seconds the deployment was created.
    pub created: u64,
    /// `cyxwiz-node`.
    pub owned_by: &'static str,
    /// `llm`, `embedding` or `tensor`.
    pub kind: String,
    /// The plugin serving it.
    pub plugin: Option<String>,
}

/// The answer of `/v1/models`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelList {
    /// `list`.
    pub object: &'static str,
    /// The models.
    pub data: Vec<Model>,
}

/// The answer of `/v1/predict`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Prediction {
    /// `prediction`.
    pub object: &'static str,
    /// The model name as asked.
    pub model: String,
    /// Seconds the inference took.
    pub seconds: f64,
    /// Output tensors by name: `{dtype, shape, data}`.
    #[schema(value_type = Object)]
    pub outputs: serde_json::Value,
}

/// The error object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong.
    pub message: String,
    /// `invalid_request_error`, `permission_error`, `requests`, `server_error`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault.
    pub param: Option<String>,
    /// A machine-readable code.
    pub code: Option<String>,
}

/// Every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}
