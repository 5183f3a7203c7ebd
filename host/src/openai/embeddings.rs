//! `POST /v1/embeddings`: a string, a list of strings, a token array or a list of token
//! arrays; vectors as JSON floats or base64 little-endian float32 (what the `openai` SDK asks
//! for by default). A request holds at most `[api] max_embedding_inputs` inputs, and the model
//! runs on at most `[api] max_batch_tokens` padded tokens at a time (see `models::embedding`).

use super::error::RequestLimits;
use super::types::{Embedding, EmbeddingList, EmbeddingUsage, Vector};
use super::{ApiError, ApiJson, Caller, Ctx};
use crate::models::EmbedInput;
use axum::{extract::State, Json};
use base64::Engine as _;
use serde::Deserialize;
use utoipa::ToSchema;

/// `input` in its four forms.
#[derive(Debug, Deserialize, ToSchema)]
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
#[derive(Debug, Deserialize, ToSchema)]
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

/// Embeddings of texts or token arrays.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    operation_id = "createEmbedding",
    tag = "openai",
    request_body = EmbeddingRequest,
    responses(
        (status = 200, description = "One vector per input", body = EmbeddingList),
        super::openapi::ModelCallErrors,
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(ctx): State<Ctx>,
    caller: Caller,
    limits: RequestLimits,
    ApiJson(req): ApiJson<EmbeddingRequest>,
) -> Result<Json<EmbeddingList>, ApiError> {
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
    if count == 0 {
        return Err(ApiError::invalid_param(
            "input",
            "input must hold at least one item",
        ));
    }
    let max = limits.max_embedding_inputs;
    if count > max {
        return Err(ApiError::invalid_param(
            "input",
            format!("`max_embedding_inputs` is {max}, got {count}"),
        ));
    }
    let worker = ctx.model(&caller, &req.model)?;
    let out = worker
        .embed(input, limits.max_batch_tokens)
        .await
        .map_err(|e| {
            let mut e = ApiError::from(e);
            if e.status == axum::http::StatusCode::BAD_REQUEST && e.param.is_none() {
                e.param = Some("input".into());
            }
            e
        })?;
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
    let data = out
        .rows()
        .enumerate()
        .map(|(index, row)| Embedding {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Float(row.to_vec())
            },
        })
        .collect();
    Ok(Json(EmbeddingList {
        object: "list",
        data,
        model: req.model,
        usage: EmbeddingUsage {
            prompt_tokens: out.prompt_tokens,
            total_tokens: out.prompt_tokens,
        },
    }))
}

#[cfg(test)]
mod tests {
    use crate::openai::error::tests::{app, app_with, send};
    use crate::openai::error::RequestLimits;
    use axum::http::StatusCode;
    use serde_json::json;

    #[tokio::test]
    async fn too_many_inputs_are_refused_before_any_work_and_the_node_stays_healthy() {
        // The attack: 2048 inputs of 128 tokens in one request (1.4 -> 17.7 GB before).
        let tokens = vec![vec![1000u32; 128]; 2048];
        let texts = vec!["word ".repeat(127); 2048];
        let app = app(&["a"]);
        for input in [json!(tokens), json!(texts)] {
            let body = json!({"model": "a", "input": input}).to_string();
            let (status, json) = send(&app, "POST", "/v1/embeddings", None, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
            assert_eq!(json["error"]["param"], "input");
            assert_eq!(
                json["error"]["message"],
                "`max_embedding_inputs` is 256, got 2048"
            );
        }
        let (status, json) = send(&app, "GET", "/health", None, "").await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "`a` is loading: {json}"
        );
        assert_eq!(json["status"], "loading");

        // The bound is the configured one; within it the request goes on to the model.
        let limits = RequestLimits {
            max_embedding_inputs: 4096,
            ..RequestLimits::default()
        };
        let app = app_with(&["a"], Some(limits));
        let body = json!({"model": "a", "input": tokens}).to_string();
        let (status, json) = send(&app, "POST", "/v1/embeddings", None, &body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
        let body = json!({"model": "a", "input": []}).to_string();
        let (status, json) = send(&app, "POST", "/v1/embeddings", None, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert_eq!(
            json["error"]["message"],
            "input must hold at least one item"
        );
    }
}
