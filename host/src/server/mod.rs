//! The node's HTTP face for this wave: `GET /health`, plus OpenAI-shaped JSON errors for
//! everything else. Servers take an already-bound listener so tests bind port 0.

use crate::deployments::{DeploymentView, Deployments};
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;
use std::{future::Future, sync::Arc};

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct AppState {
    /// Node name.
    pub node_name: String,
    /// Persistent node id.
    pub node_id: String,
    /// Deployments and their status.
    pub deployments: Arc<Deployments>,
    /// Plugins loaded.
    pub plugins_loaded: usize,
    /// Plugin libraries skipped.
    pub plugins_failed: usize,
    /// When the node started.
    pub started: std::time::Instant,
}

/// An OpenAI-shaped error response.
pub fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "param": null, "code": null}})),
    )
        .into_response()
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let models: Vec<DeploymentView> = state.deployments.snapshot();
    let loading = state.deployments.loading();
    let failed = models
        .iter()
        .filter(|m| m.status == crate::deployments::Status::Failed)
        .count();
    let status = if loading {
        "loading"
    } else if failed > 0 {
        "degraded"
    } else {
        "ok"
    };
    let body = json!({
        "status": status,
        "reason": if loading { "models are loading" } else if failed > 0 { "some models failed to load" } else { "" },
        "node": {"name": state.node_name, "id": state.node_id, "version": env!("CARGO_PKG_VERSION")},
        "uptime_seconds": state.started.elapsed().as_secs(),
        "plugins": {"loaded": state.plugins_loaded, "failed": state.plugins_failed},
        "models": models,
    });
    let code = if loading {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found_error", "no such route")
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(state)
}

/// Serves HTTP on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    state: Arc<AppState>,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DeploymentConfig};

    fn state(deployments: Deployments) -> Arc<AppState> {
        Arc::new(AppState {
            node_name: "n".into(),
            node_id: "id".into(),
            deployments: Arc::new(deployments),
            plugins_loaded: 0,
            plugins_failed: 0,
            started: std::time::Instant::now(),
        })
    }

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn health_is_503_while_models_load_and_200_when_none_are_pending() {
        let mut config = Config::default();
        config.deployments.push(DeploymentConfig {
            name: "m".into(),
            path: "m.onnx".into(),
            plugin: None,
            threads: 0,
            workers: 1,
            queue_size: 1,
            options: Default::default(),
        });
        let response = health(State(state(Deployments::from_config(&config)))).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let json = body(response).await;
        assert_eq!(json["status"], "loading");
        assert_eq!(json["models"][0]["status"], "pending");

        let response = health(State(state(Deployments::default()))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await["status"], "ok");
    }
}
