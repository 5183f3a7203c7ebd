//! The one place errors become HTTP: OpenAI's `{"error": {message, type, param, code}}` body
//! with OpenAI's status codes, the body extractors that answer malformed or oversized bodies
//! in that same shape, and the request bounds ([`RequestLimits`]) the router puts in request
//! extensions for the handlers.

use crate::{
    config::ApiSection,
    models::{tensor_json::JsonLimits, WorkerError},
    node::{ErrorKind, NodeError},
};
use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::de::DeserializeOwned;
use serde_json::json;

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI error type.
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The request parameter at fault.
    pub param: Option<String>,
    /// A machine-readable code.
    pub code: Option<&'static str>,
    /// Seconds until a retry may succeed (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// 400 for a bad request.
    pub fn invalid(message: impl Into<String>) -> Self {
        NodeError::invalid(message).into()
    }

    /// 400 naming the parameter at fault.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        NodeError::invalid_param(param, message).into()
    }

    /// 404 for an unknown model.
    pub fn unknown_model(name: &str) -> Self {
        NodeError::unknown_model(name).into()
    }

    /// 404 for an unknown route.
    pub fn no_route(method: &str, path: &str) -> Self {
        NodeError::new(
            ErrorKind::NotFound,
            format!("Unknown request URL: {method} {path}"),
        )
        .into()
    }

    /// 405 for a route that exists with other methods (a transport-only error: no node
    /// operation is involved).
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            ..Self::invalid(format!("method {method} is not allowed on {path}"))
        }
    }

    /// 413.
    pub fn too_large(limit: usize) -> Self {
        NodeError::new(
            ErrorKind::TooLarge,
            format!("request body exceeds {limit} bytes ([api] max_body_bytes)"),
        )
        .into()
    }

    /// 500 with a generic message; the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        NodeError::internal(detail).into()
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        NodeError::new(ErrorKind::Unavailable, message).into()
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// The one mapping of a node error to HTTP: the status and OpenAI error type of its kind
/// ([`ErrorKind::http_status`], [`ErrorKind::openai_type`]), and its parameter, code and
/// retry delay.
impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        Self {
            status: StatusCode::from_u16(e.kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind: e.kind.openai_type(),
            message: e.message,
            param: e.param,
            code: e.code,
            retry_after: e.retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl IntoResponse for NodeError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> Self {
        NodeError::from(e).into()
    }
}

/// A request body read whole, with the OpenAI error shape for failures (413 over the size
/// limit), for handlers that parse it themselves, off the async threads.
#[derive(Debug)]
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(usize::MAX, |l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(limit)
            } else {
                ApiError::invalid(format!("could not read the request body: {e}"))
            }
        })?;
        Ok(ApiBytes(bytes))
    }
}

/// The message of a body that did not parse: its JSON syntax, or what it holds.
pub fn json_message(e: &serde_json::Error) -> String {
    if e.is_syntax() || e.is_eof() {
        format!("the request body is not valid JSON: {e}")
    } else {
        format!("invalid request: {e}")
    }
}

/// A JSON body parsed with the OpenAI error shape for every failure: 413 over the size
/// limit, 400 naming the bad field otherwise.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let message = json_message(&e.into_inner());
            if path.is_empty() || path == "." {
                ApiError::invalid(message)
            } else {
                ApiError::invalid_param(path, message)
            }
        })?;
        Ok(ApiJson(value))
    }
}

/// The body size limit in force, put in request extensions for error messages.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// What one request may ask of a model, from `[api]`: the router puts it in request
/// extensions (`Extension(RequestLimits::from(&api))`); a handler without it gets the
/// defaults, which are `[api]`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Bounds on `/v1/predict` JSON tensors (`max_tensor_elements`).
    pub tensors: JsonLimits,
    /// Most inputs of one `/v1/embeddings` request (`max_embedding_inputs`).
    pub max_embedding_inputs: usize,
    /// Most padded tokens per run of an embedding model (`max_batch_tokens`).
    pub max_batch_tokens: usize,
}

impl From<&ApiSection> for RequestLimits {
    fn from(api: &ApiSection) -> Self {
        Self {
            tensors: JsonLimits {
                max_elements: api.max_tensor_elements,
            },
            max_embedding_inputs: api.max_embedding_inputs,
            max_batch_tokens: api.max_batch_tokens,
        }
    }
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self::from(&ApiSection::default())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestLimits {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestLimits>()
            .copied()
            .unwrap_or_default())
    }
}

/// A `/v1` router on a scratch node for the endpoint tests: its deployments never load (there
/// are no plugins), so each is pending (`loading-…`) or failed (`failed-…`) as named.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{
        config::{Config, DeploymentConfig},
        deployments::Deployments,
        plugins::Registry,
        store::Store,
    };
    use axum::{body::Body, Router};
    use std::sync::Arc;

    /// The router, a key that may use only model `a`, and the scratch directory.
    pub(crate) struct App {
        pub router: Router,
        pub restricted_key: String,
        _dir: tempfile::TempDir,
    }

    fn deployment(name: &str) -> DeploymentConfig {
        DeploymentConfig::new(name, format!("/nonexistent/{name}.onnx"))
    }

    /// An app with `models` deployed (see the module doc) and the default limits.
    pub(crate) fn app(models: &[&str]) -> App {
        app_with(models, None)
    }

    /// An app with `models` and, if given, `limits` in request extensions.
    pub(crate) fn app_with(models: &[&str], limits: Option<RequestLimits>) -> App {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("node.db");
        let store = Store::open(&db).unwrap();
        let (restricted_key, _) = store
            .create_key("restricted", &[], &["a".to_string()], 0)
            .unwrap();
        let config = Config {
            deployments: models
                .iter()
                .filter(|m| !m.starts_with("failed"))
                .map(|m| deployment(m))
                .collect(),
            ..Config::default()
        };
        let registry = Registry::discover(&[], Default::default());
        let deployments = Deployments::from_config(&config);
        for failed in models.iter().filter(|m| m.starts_with("failed")) {
            assert!(deployments.deploy(deployment(failed), &registry).is_err());
        }
        drop(store);
        let state = Arc::new(crate::node::Node::scratch(config, deployments, dir.path()));
        // The limits reach the handlers the way `[api]` does in the node: through the router.
        let mut api = ApiSection::default();
        if let Some(limits) = limits {
            api.max_tensor_elements = limits.tensors.max_elements;
            api.max_embedding_inputs = limits.max_embedding_inputs;
            api.max_batch_tokens = limits.max_batch_tokens;
        }
        let router = crate::server::router(state, &api);
        App {
            router,
            restricted_key,
            _dir: dir,
        }
    }

    /// Sends one request (with `key` as bearer token if given); the status and JSON body.
    pub(crate) async fn send(
        app: &App,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        use tower::ServiceExt;
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "127.0.0.1")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = request.body(Body::from(body.to_string())).unwrap();
        let response = app.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    #[tokio::test]
    async fn request_limits_come_from_the_extension_or_default_to_api_defaults() {
        let limits = RequestLimits::default();
        assert_eq!(limits.tensors.max_elements, 4 << 20);
        assert_eq!(limits.max_embedding_inputs, 256);
        assert_eq!(limits.max_batch_tokens, 8192);
        let mut parts = axum::http::Request::new(()).into_parts().0;
        let got = RequestLimits::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(got, limits);
        let custom = RequestLimits {
            max_embedding_inputs: 3,
            ..limits
        };
        parts.extensions.insert(custom);
        let got = RequestLimits::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(got, custom);
    }
}
