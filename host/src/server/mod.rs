//! The node's HTTP face: `/health`, `/metrics`, the OpenAI-compatible `/v1` routes (behind
//! [`auth`]), OpenAI-shaped errors for unknown routes and methods, the body-size limit, CORS,
//! and request metrics. [`control`] is the operator's local socket. Servers take an
//! already-bound listener so tests bind port 0.

pub mod auth;
pub mod control;
pub mod tls;

use crate::{
    config::ApiSection,
    deployments::{DeploymentView, Deployments, Status},
    metrics::Metrics,
    openai::{self, error::BodyLimit, ApiError},
    plugins::Registry,
    store::Store,
};
use axum::{
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{header, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Extension, Json, Router,
};
use serde_json::json;
use std::{
    future::Future,
    sync::{Arc, Mutex},
};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct AppState {
    /// Node name.
    pub node_name: String,
    /// The node id (adopted from the central server once registered) and the central link.
    pub central: Arc<crate::central::CentralLink>,
    /// Ports the gRPC services listen on (empty: off).
    pub grpc_ports: Vec<u16>,
    /// Deployments and their status.
    pub deployments: Arc<Deployments>,
    /// The plugin registry deployments load through.
    pub registry: Arc<Registry>,
    /// The database (keys, audit log).
    pub store: Mutex<Store>,
    /// Request metrics.
    pub metrics: Arc<Metrics>,
    /// Per-key rate windows.
    pub limiter: auth::RateLimiter,
    /// Whether `/v1` requests need a key.
    pub auth_required: bool,
    /// Plugins loaded.
    pub plugins_loaded: usize,
    /// Plugin libraries skipped.
    pub plugins_failed: usize,
    /// When the node started.
    pub started: std::time::Instant,
}

impl AppState {
    /// Appends an audit event; a failure is logged, never fatal.
    pub fn audit(&self, kind: &str, subject: &str, detail: &str) {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = store.audit(kind, subject, detail) {
            tracing::warn!(error = %e, kind, "cannot write the audit log");
        }
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let models: Vec<DeploymentView> = state.deployments.snapshot();
    let loading = state.deployments.loading();
    let failed = models.iter().filter(|m| m.status == Status::Failed).count();
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
        "node": {"name": state.node_name, "id": state.central.node_id(), "version": env!("CARGO_PKG_VERSION")},
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

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let snapshot = state.deployments.snapshot();
    let text = state.metrics.render(&snapshot, |name| {
        state.deployments.get(name).map_or(0, |w| w.queue_depth())
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    ApiError::no_route(method.as_str(), uri.path()).into_response()
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    let mut e = ApiError::invalid(format!("method {method} is not allowed on {}", uri.path()));
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e.into_response()
}

/// Counts every request by matched route and status.
async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .request(&route, response.status().as_u16(), started.elapsed());
    response
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([
                header::RETRY_AFTER,
                header::HeaderName::from_static("x-ratelimit-limit-requests"),
                header::HeaderName::from_static("x-ratelimit-remaining-requests"),
                header::HeaderName::from_static("x-ratelimit-reset-requests"),
            ]),
    )
}

/// The router.
pub fn router(state: Arc<AppState>, api: &ApiSection) -> Router {
    let v1 = openai::routes().route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_key,
    ));
    let router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openai::openapi::document))
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(api.max_body_bytes))
        .layer(Extension(BodyLimit(api.max_body_bytes)))
        .with_state(state);
    match cors(&api.cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// Serves HTTP on `listener` (plain TCP or [`tls::TlsListener`]) until `shutdown` completes.
pub async fn serve<L>(
    listener: L,
    shutdown: impl Future<Output = ()> + Send + 'static,
    state: Arc<AppState>,
    api: &ApiSection,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router(state, api))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DeploymentConfig};

    fn state(deployments: Deployments, dir: &std::path::Path) -> Arc<AppState> {
        Arc::new(AppState {
            node_name: "n".into(),
            central: Arc::new(crate::central::CentralLink::new("id".into(), "")),
            grpc_ports: Vec::new(),
            deployments: Arc::new(deployments),
            registry: Arc::new(Registry::discover(&[], Default::default())),
            store: Mutex::new(Store::open(&dir.join("node.db")).unwrap()),
            metrics: Arc::default(),
            limiter: auth::RateLimiter::default(),
            auth_required: false,
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
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.deployments.push(DeploymentConfig {
            name: "m".into(),
            path: "m.onnx".into(),
            plugin: None,
            aliases: Vec::new(),
            threads: 0,
            workers: 1,
            queue_size: 1,
            max_concurrent_requests: 0,
            max_batch: 1,
            pooling: None,
            normalize: true,
            options: Default::default(),
        });
        let response = health(State(state(Deployments::from_config(&config), dir.path()))).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let json = body(response).await;
        assert_eq!(json["status"], "loading");
        assert_eq!(json["models"][0]["status"], "pending");

        let response = health(State(state(Deployments::default(), dir.path()))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await["status"], "ok");
    }

    async fn call(router: Router, request: axum::http::Request<axum::body::Body>) -> Response {
        use tower::ServiceExt;
        router.oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn cors_answers_preflights_only_for_configured_origins() {
        let dir = tempfile::tempdir().unwrap();
        let api = ApiSection {
            cors_origins: vec!["https://app.example".into()],
            ..ApiSection::default()
        };
        let preflight = |origin: &str| {
            axum::http::Request::builder()
                .method(Method::OPTIONS)
                .uri("/v1/chat/completions")
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .header(
                    header::ACCESS_CONTROL_REQUEST_HEADERS,
                    "authorization,content-type",
                )
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let app = router(state(Deployments::default(), dir.path()), &api);
        let ok = call(app.clone(), preflight("https://app.example")).await;
        assert_eq!(
            ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        let other = call(app, preflight("https://evil.example")).await;
        assert!(other
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());

        // Without configured origins there are no CORS headers at all.
        let plain = router(
            state(Deployments::default(), dir.path()),
            &ApiSection::default(),
        );
        let response = call(plain, preflight("https://app.example")).await;
        assert!(response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
    }

    #[tokio::test]
    async fn malformed_bodies_and_wrong_methods_get_openai_errors() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(
            state(Deployments::default(), dir.path()),
            &ApiSection::default(),
        );
        let bad = axum::http::Request::builder()
            .method(Method::POST)
            .uri("/v1/embeddings")
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(r#"{"model": "m", "input": 5}"#))
            .unwrap();
        let response = call(app.clone(), bad).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let json = body(response).await;
        assert_eq!(json["error"]["param"], "input", "{json}");
        let wrong = axum::http::Request::builder()
            .method(Method::GET)
            .uri("/v1/embeddings")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = call(app, wrong).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            body(response).await["error"]["type"],
            "invalid_request_error"
        );
    }
}
