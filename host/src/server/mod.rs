//! The node's HTTP face: [`health`], `/metrics`, the OpenAI-compatible `/v1` routes (behind
//! [`auth`]), OpenAI-shaped errors for unknown routes and methods, the body-size limit, CORS,
//! the [`guard`]s against web pages (Host allow-list, JSON-only bodies), and request metrics;
//! [`limits`] serves it with header and body deadlines, a connection cap and a bounded
//! graceful shutdown. Handlers are adapters over [`Node`]. Servers take an already-bound
//! listener so tests bind port 0.

pub mod auth;
pub mod guard;
pub mod health;
pub mod limits;
pub mod tls;

use crate::{
    config::ApiSection,
    node::Node,
    openai::{self, error::BodyLimit, ApiError},
};
use axum::{
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{header, HeaderValue, Method},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Extension, Router,
};
use std::{future::Future, sync::Arc};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The training jobs' figures for `/metrics` (a database read: off the async threads).
async fn job_readings(state: &Arc<Node>) -> Option<crate::metrics::JobReadings> {
    let jobs = state.jobs.clone();
    let node = state.clone();
    tokio::task::spawn_blocking(move || {
        let stats = jobs.stats();
        let (by_origin, outbox) = {
            let store = node.store.lock().unwrap_or_else(|p| p.into_inner());
            let by_origin = store.job_origin_counts().unwrap_or_default();
            let outbox = store
                .outbox_counts()
                .map(|c| {
                    vec![
                        ("pending".to_string(), c.pending),
                        ("acked".to_string(), c.acked),
                        ("failed".to_string(), c.failed),
                    ]
                })
                .unwrap_or_default();
            (by_origin, outbox)
        };
        crate::metrics::JobReadings {
            by_state: stats
                .by_state
                .into_iter()
                .map(|(state, n)| (state.to_string(), n))
                .collect(),
            samples_per_second: stats.samples_per_second,
            finished: jobs
                .drain_finished()
                .into_iter()
                .map(|(state, secs)| (state.as_str().to_string(), secs))
                .collect(),
            by_origin,
            outbox,
            report_retries: crate::reports::retries_total(),
        }
    })
    .await
    .ok()
}

async fn metrics(State(state): State<Arc<Node>>) -> Response {
    if let Some(readings) = job_readings(&state).await {
        state.metrics.set_jobs(readings);
    }
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
    ApiError::method_not_allowed(method.as_str(), uri.path()).into_response()
}

/// Counts every request by matched route and status.
async fn track(State(state): State<Arc<Node>>, req: Request, next: Next) -> Response {
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
pub fn router(state: Arc<Node>, api: &ApiSection) -> Router {
    let v1 = openai::routes().route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_key,
    ));
    let jobs = openai::jobs::routes(state.config.jobs.max_inline_dataset_bytes).route_layer(
        middleware::from_fn_with_state(state.clone(), auth::require_jobs_key),
    );
    let limits = limits::Limits::from_api(api);
    let router = Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openai::openapi::document))
        .merge(v1)
        .merge(jobs)
        .route_layer(middleware::from_fn(guard::json_bodies))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            limits.body_timeout,
            limits::body_deadline,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(api.max_body_bytes))
        .layer(Extension(BodyLimit(api.max_body_bytes)))
        .layer(Extension(crate::openai::error::RequestLimits::from(api)))
        .with_state(state);
    let router = match cors(&api.cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    };
    // Outermost: a request for a foreign host is refused before anything else runs.
    router.layer(middleware::from_fn_with_state(
        guard::HostPolicy::from_api(api),
        guard::check_host,
    ))
}

/// Serves HTTP on `listener` (plain TCP or [`tls::TlsListener`]) until `shutdown` completes,
/// with `[api]`'s [`limits`]; returns once open connections have finished or the shutdown
/// grace is over.
pub async fn serve<L>(
    listener: L,
    shutdown: impl Future<Output = ()> + Send + 'static,
    state: Arc<Node>,
    api: &ApiSection,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    limits::serve(
        listener,
        router(state, api),
        limits::Limits::from_api(api),
        shutdown,
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{Config, DeploymentConfig},
        deployments::Deployments,
        store::Store,
    };
    use axum::http::StatusCode;

    fn state(deployments: Deployments, dir: &std::path::Path) -> Arc<Node> {
        Arc::new(app_state(deployments, dir))
    }

    fn app_state(deployments: Deployments, dir: &std::path::Path) -> Node {
        let mut config = Config::default();
        config.node.name = "n".into();
        Node::scratch(config, deployments, dir)
    }

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// A config with one deployment of `path` (never loaded in these tests: pending).
    fn one_deployment(path: &str) -> Config {
        let mut config = Config::default();
        config.deployments.push(DeploymentConfig {
            workers: 1,
            queue_size: 1,
            max_batch: 1,
            ..DeploymentConfig::new("m", path)
        });
        config
    }

    #[tokio::test]
    async fn health_is_503_while_models_load_and_200_when_none_are_pending() {
        let dir = tempfile::tempdir().unwrap();
        let config = one_deployment("m.onnx");
        let health = |state| health::health(State(state), axum::http::HeaderMap::new());
        let response = health(state(Deployments::from_config(&config), dir.path())).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let json = body(response).await;
        assert_eq!(json["status"], "loading");
        assert_eq!(json["models"][0]["status"], "pending");

        let response = health(state(Deployments::default(), dir.path())).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await["status"], "ok");
    }

    #[tokio::test]
    async fn health_shows_model_paths_only_to_a_key_where_keys_are_required() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = Store::open(&dir.path().join("node.db"))
            .unwrap()
            .create_key("ops", &[], &[], 0)
            .unwrap();
        let secret = "/srv/secret/models/m.onnx";
        let config = one_deployment(secret);
        let mut node = app_state(Deployments::from_config(&config), dir.path());
        node.auth_required = true;
        let app = router(Arc::new(node), &ApiSection::default());
        let get = |auth: Option<&str>| {
            let mut request = axum::http::Request::builder()
                .uri("/health")
                .header(header::HOST, "localhost:8000");
            if let Some(auth) = auth {
                request = request.header(header::AUTHORIZATION, auth);
            }
            request.body(axum::body::Body::empty()).unwrap()
        };
        // The attack: no key, or a wrong one. The answer: status only, nothing to leak.
        for auth in [None, Some("Bearer cyx-not-a-key".to_string())] {
            let response = call(app.clone(), get(auth.as_deref())).await;
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            let json = body(response).await;
            assert_eq!(json["status"], "loading", "{json}");
            assert_eq!(json["node"]["version"], env!("CARGO_PKG_VERSION"));
            let text = json.to_string();
            for leak in [secret, "\"models\"", "\"plugins\"", "\"name\""] {
                assert!(!text.contains(leak), "{leak} in {text}");
            }
        }
        // A valid key sees the details.
        let response = call(app, get(Some(&format!("Bearer {key}")))).await;
        let json = body(response).await;
        assert_eq!(json["models"][0]["name"], "m", "{json}");
        assert_eq!(json["node"]["name"], "n");
    }

    #[tokio::test]
    async fn a_text_plain_post_from_a_web_page_is_refused_with_415() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(
            state(Deployments::default(), dir.path()),
            &ApiSection::default(),
        );
        let post = |content_type: Option<&str>| {
            let mut request = axum::http::Request::builder()
                .method(Method::POST)
                .uri("/v1/embeddings")
                .header(header::HOST, "localhost:8000");
            if let Some(t) = content_type {
                request = request.header(header::CONTENT_TYPE, t);
            }
            request
                .body(axum::body::Body::from(r#"{"model": "m", "input": "x"}"#))
                .unwrap()
        };
        for attack in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=b"),
            None,
        ] {
            let response = call(app.clone(), post(attack)).await;
            assert_eq!(
                response.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{attack:?}"
            );
            let json = body(response).await;
            assert_eq!(json["error"]["type"], "invalid_request_error");
            assert_eq!(json["error"]["code"], "unsupported_media_type");
        }
        // JSON, with or without parameters, reaches the handler (no such model here).
        for ok in ["application/json", "application/json; charset=utf-8"] {
            let response = call(app.clone(), post(Some(ok))).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{ok}");
        }
        // Still healthy.
        let health = axum::http::Request::builder()
            .uri("/health")
            .header(header::HOST, "localhost")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(call(app, health).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_rebound_host_name_is_refused_on_a_loopback_node() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(
            state(Deployments::default(), dir.path()),
            &ApiSection::default(),
        );
        let get = |host: &str, path: &str| {
            axum::http::Request::builder()
                .uri(path)
                .header(header::HOST, host)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        for path in ["/health", "/v1/models", "/metrics", "/no/such/route"] {
            let response = call(app.clone(), get("attacker.example:8000", path)).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
            let json = body(response).await;
            assert_eq!(json["error"]["code"], "host_not_allowed", "{json}");
        }
        for host in ["localhost:8000", "127.0.0.1:8000", "[::1]:8000"] {
            let response = call(app.clone(), get(host, "/health")).await;
            assert_eq!(response.status(), StatusCode::OK, "{host}");
        }
        // Listed names pass; `*` lets any through.
        let listed = ApiSection {
            allowed_hosts: vec!["node.example".into()],
            ..ApiSection::default()
        };
        let app = router(state(Deployments::default(), dir.path()), &listed);
        let response = call(app, get("node.example:443", "/health")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let any = ApiSection {
            allowed_hosts: vec!["*".into()],
            ..ApiSection::default()
        };
        let app = router(state(Deployments::default(), dir.path()), &any);
        let response = call(app, get("anything.example", "/health")).await;
        assert_eq!(response.status(), StatusCode::OK);
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
