//! The one place errors become HTTP: OpenAI's `{"error": {message, type, param, code}}` body
//! with OpenAI's status codes, and the JSON body extractor that answers malformed or
//! oversized bodies in that same shape.

use crate::{deployments::Lookup, models::WorkerError};
use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use cyxwiz_sdk::ErrorKind;
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
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400 for a bad request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 naming the parameter at fault.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.into()),
            ..Self::invalid(message)
        }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            code: Some("invalid_api_key"),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
        }
    }

    /// 403: the key may not use this model.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            code: Some("model_not_allowed"),
            ..Self::new(StatusCode::FORBIDDEN, "permission_error", message)
        }
    }

    /// 404 for an unknown model.
    pub fn unknown_model(name: &str) -> Self {
        Self {
            param: Some("model".into()),
            code: Some("model_not_found"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("The model `{name}` does not exist or is not deployed on this node"),
            )
        }
    }

    /// 404 for an unknown route.
    pub fn no_route(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Unknown request URL: {method} {path}"),
        )
    }

    /// 413.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("request body exceeds {limit} bytes ([api] max_body_bytes)"),
        )
    }

    /// 429 for a key over its rate.
    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            code: Some("rate_limit_exceeded"),
            retry_after: Some(retry_after.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "requests", message)
        }
    }

    /// 429 for a model with a full queue.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self {
            code: Some("overloaded"),
            retry_after: Some(1),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "server_overloaded", message)
        }
    }

    /// 500 with a generic message; the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error answered with 500");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The server had an error while processing your request",
        )
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                message,
            )
        }
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

    /// A model lookup that did not find a serving model.
    pub fn from_lookup(lookup: Lookup, name: &str) -> Self {
        match lookup {
            Lookup::Unknown | Lookup::Ready(_) => Self::unknown_model(name),
            Lookup::Loading => Self::unavailable(format!("model `{name}` is still loading")),
            Lookup::Unavailable(why) => Self::unavailable(why),
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

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Overloaded { .. } | WorkerError::AtCapacity { .. } => {
                Self::overloaded(e.to_string())
            }
            WorkerError::Stopped(_) => Self::unavailable(e.to_string()),
            WorkerError::Unsupported { .. } => Self::invalid_param("model", e.to_string()),
            WorkerError::Model(e) => match e.kind {
                ErrorKind::INVALID_INPUT | ErrorKind::UNSUPPORTED => Self::invalid(e.message),
                ErrorKind::NOT_FOUND => {
                    Self::new(StatusCode::NOT_FOUND, "invalid_request_error", e.message)
                }
                ErrorKind::BUSY => Self::overloaded(e.message),
                ErrorKind::OUT_OF_MEMORY => {
                    Self::unavailable(format!("the model ran out of memory: {}", e.message))
                }
                _ => Self::internal(format!("{} ({})", e.message, e.kind)),
            },
        }
    }
}

/// A JSON body parsed with the OpenAI error shape for every failure: 413 over the size
/// limit, 400 naming the bad field otherwise.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
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
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = if inner.is_syntax() || inner.is_eof() {
                format!("the request body is not valid JSON: {inner}")
            } else {
                format!("invalid request: {inner}")
            };
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
