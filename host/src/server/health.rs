//! `GET /health`: 200 `ok`/`degraded`, 503 `loading`. Where keys are required (beyond
//! loopback, or `require_auth`), a caller without a valid key learns only the status, its
//! reason and the node version; the details (node name and id, plugin counts, every
//! deployment with its plugin, memory and error message) need `Authorization: Bearer KEY`
//! with any active key. Where keys are not required (the operator's own loopback node),
//! everyone gets the details, as everyone may use the API there.

use super::auth;
use crate::deployments::{DeploymentView, Status};
use crate::node::Node;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;
use std::sync::Arc;

/// Whether the request presents an active key.
fn has_valid_key(state: &Node, headers: &HeaderMap) -> bool {
    auth::bearer(headers).is_some_and(|key| state.access.keyring.lookup(key).is_some())
}

/// The handler.
pub async fn health(State(state): State<Arc<Node>>, headers: HeaderMap) -> Response {
    let models: Vec<DeploymentView> = state.deployments.snapshot();
    let loading = state.deployments.loading();
    let failed = models.iter().filter(|m| m.status == Status::Failed).count();
    let (status, reason) = if loading {
        ("loading", "models are loading")
    } else if failed > 0 {
        ("degraded", "some models failed to load")
    } else {
        ("ok", "")
    };
    let code = if loading {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let detailed = !state.auth_required || has_valid_key(&state, &headers);
    let body = if detailed {
        json!({
            "status": status,
            "reason": reason,
            "node": {"name": state.name(), "id": state.central.node_id(), "version": env!("CARGO_PKG_VERSION")},
            "uptime_seconds": state.started.elapsed().as_secs(),
            "plugins": state.plugin_counts(),
            "models": models,
        })
    } else {
        json!({
            "status": status,
            "reason": reason,
            "node": {"version": env!("CARGO_PKG_VERSION")},
        })
    };
    (code, Json(body)).into_response()
}
