//! The OpenAI-compatible API, one module per endpoint family: `models`, `chat`,
//! `completions`, `embeddings`, and `predict` (tensors, for non-text models). `error` is the
//! one place errors become HTTP; `generation` and `sse` are shared by chat and completions;
//! `types` holds the response bodies and `openapi` the document generated from them.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod error;
pub mod generation;
pub mod models;
pub mod openapi;
pub mod predict;
pub mod sse;
pub mod types;

use crate::{
    deployments::Lookup,
    models::ModelWorker,
    server::{auth::Caller, AppState},
};
use axum::{
    routing::{get, post},
    Router,
};
pub use error::{ApiError, ApiJson};
use std::sync::Arc;

/// The state every handler gets.
pub type Ctx = Arc<AppState>;

impl AppState {
    /// The serving worker of `name` (a deployment name or alias), if the caller may use it.
    /// A model the caller may not use is answered exactly like one that does not exist
    /// (404 `model_not_found`), whatever its state, so a restricted key learns nothing about
    /// the others.
    pub fn model(&self, caller: &Caller, name: &str) -> Result<Arc<ModelWorker>, ApiError> {
        let lookup = self.deployments.lookup(name);
        let allowed = caller.may_use(name)
            || match &lookup {
                Lookup::Ready(worker) => caller.may_use(worker.name()),
                Lookup::Unknown => false,
                Lookup::Loading | Lookup::Unavailable(_) => self
                    .deployments
                    .snapshot()
                    .iter()
                    .find(|d| d.name == name || d.aliases.iter().any(|a| a == name))
                    .is_some_and(|d| caller.may_use(&d.name)),
            };
        match lookup {
            _ if !allowed => Err(ApiError::unknown_model(name)),
            Lookup::Ready(worker) => Ok(worker),
            other => Err(ApiError::from_lookup(other, name)),
        }
    }
}

/// The `/v1` routes.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .route("/v1/chat/completions", post(chat::create))
        .route("/v1/completions", post(completions::create))
        .route("/v1/embeddings", post(embeddings::create))
        .route("/v1/predict", post(predict::create))
}
