//! `POST /v1/embeddings`: a string, a list of strings, a token array or a list of token
//! arrays; vectors as JSON floats or base64 little-endian float32 (what the `openai` SDK asks
//! for by default).

use super::{ApiError, ApiJson, Caller, Ctx};
use crate::models::EmbedInput;
use axum::{extract::State, Json};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

/// `input` in its four forms.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
    /// One token array.
    Tokens(Vec<u32>),
    /// Several token arrays.
    TokenLists(Vec<Vec<u32>>),
}

/// The request body.
#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    /// Model name or alias.
    pub model: String,
    /// What to embed.
    pub input: Input,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Output width; must equal the model's.
    #[serde(default)]
    pub dimensions: Option<u32>,
    /// End-user id (logged).
    #[serde(default)]
    pub user: Option<String>,
}

/// Most inputs per request.
const MAX_INPUTS: usize = 2048;

/// The handler.
pub async fn create(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiJson(req): ApiJson<EmbeddingRequest>,
) -> Result<Json<Value>, ApiError> {
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                format!("encoding_format must be `float` or `base64`, got `{other}`"),
            ))
        }
    };
    let input = match req.input {
        Input::One(t) => EmbedInput::Texts(vec![t]),
        Input::Many(list) => EmbedInput::Texts(list),
        Input::Tokens(ids) => EmbedInput::Tokens(vec![ids]),
        Input::TokenLists(lists) => EmbedInput::Tokens(lists),
    };
    let count = match &input {
        EmbedInput::Texts(t) => {
            if let Some(i) = t.iter().position(String::is_empty) {
                return Err(ApiError::invalid_param(
                    format!("input[{i}]"),
                    "input strings must not be empty",
                ));
            }
            t.len()
        }
        EmbedInput::Tokens(t) => {
            if let Some(i) = t.iter().position(Vec::is_empty) {
                return Err(ApiError::invalid_param(
                    format!("input[{i}]"),
                    "token arrays must not be empty",
                ));
            }
            t.len()
        }
    };
    if count == 0 || count > MAX_INPUTS {
        return Err(ApiError::invalid_param(
            "input",
            format!("input must hold between 1 and {MAX_INPUTS} items, got {count}"),
        ));
    }
    let worker = ctx.model(&caller, &req.model)?;
    let out = worker.embed(input).await?;
    if let Some(d) = req.dimensions {
        if d as usize != out.dim {
            return Err(ApiError::invalid_param(
                "dimensions",
                format!(
                    "model `{}` makes {}-dimensional vectors and cannot shorten them; got \
                     dimensions = {d}",
                    req.model, out.dim
                ),
            ));
        }
    }
    let data: Vec<Value> = out
        .rows()
        .enumerate()
        .map(|(i, row)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(row)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": out.prompt_tokens, "total_tokens": out.prompt_tokens},
    })))
}
