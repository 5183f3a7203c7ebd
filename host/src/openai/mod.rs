//! The OpenAI-compatible API, one module per endpoint family: `models`, `chat`,
//! `completions`, `embeddings`, `predict` (tensors, for non-text models) and the CyxWiz
//! `jobs` (training, with `download` serving files with `Range`). `error` is the one place
//! errors become HTTP; `generation` and `sse` are shared by chat and completions; `types`
//! holds the response bodies and `openapi` the document generated from them.

pub mod chat;
pub mod completions;
pub mod download;
pub mod embeddings;
pub mod error;
pub mod generation;
pub mod jobs;
pub mod models;
pub mod openapi;
pub mod predict;
pub mod sse;
pub mod types;

pub use crate::access::Caller;
use crate::node::Node;
use axum::{
    routing::{get, post},
    Router,
};
pub use error::{ApiError, ApiJson};
use std::sync::Arc;

/// The state every handler gets.
pub type Ctx = Arc<Node>;

/// The `/v1` routes of models (the `inference` scope); [`jobs::routes`] are the others.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .route("/v1/chat/completions", post(chat::create))
        .route("/v1/completions", post(completions::create))
        .route("/v1/embeddings", post(embeddings::create))
        .route("/v1/predict", post(predict::create))
}
