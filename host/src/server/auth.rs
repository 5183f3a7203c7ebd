//! API-key authentication and per-key rate limits for `/v1`: `Authorization: Bearer KEY`
//! checked against the node's keyring ([`crate::access`]: in memory, re-read when the
//! database changes, so a revoked key stops working on its next request without a database
//! write per request), OpenAI's `x-ratelimit-*` headers, `Retry-After` on 429, and audit
//! events for failures and limit hits. The model routes of `/v1` need the `inference` scope
//! ([`require_key`]), `/v1/jobs` the `jobs` scope ([`require_jobs_key`]); `admin` has both.

use crate::{
    access::{self, Decision, Denied, Scope},
    node::{Node, NodeError},
};
use axum::{
    extract::{FromRequestParts, Request, State},
    http::{header, request::Parts, HeaderMap, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::{convert::Infallible, sync::Arc};

pub use crate::access::{Caller, RateLimiter};

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous))
    }
}

fn set_rate_headers(headers: &mut HeaderMap, d: &Decision) {
    let reset = format!("{}s", d.reset.as_secs().max(1));
    for (name, value) in [
        ("x-ratelimit-limit-requests", d.limit.to_string()),
        ("x-ratelimit-remaining-requests", d.remaining.to_string()),
        ("x-ratelimit-reset-requests", reset),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    access::bearer(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// An access refusal answered over HTTP: audited, then mapped like every node error, with
/// the rate headers on a 429.
fn refusal(node: &Node, denied: Denied, path: &str) -> Response {
    let (kind, subject) = denied.audit_event();
    let detail = match &denied {
        Denied::Missing => format!("no key for {path}"),
        Denied::Unknown { .. } => format!("unknown or revoked key for {path}"),
        Denied::Scope { .. } => format!("missing scope for {path}"),
        Denied::RateLimited { .. } => path.to_string(),
    };
    node.audit(kind, subject, &detail);
    let decision = match &denied {
        Denied::RateLimited { decision, .. } => Some(*decision),
        _ => None,
    };
    let mut response = NodeError::from(denied).into_response();
    if let Some(d) = decision {
        set_rate_headers(response.headers_mut(), &d);
    }
    response
}

/// The middleware on the model routes of `/v1` (the `inference` scope).
pub async fn require_key(State(state): State<Arc<Node>>, req: Request, next: Next) -> Response {
    admit(&state, req, next, Scope::Inference).await
}

/// The middleware on `/v1/jobs` (the `jobs` scope).
pub async fn require_jobs_key(
    State(state): State<Arc<Node>>,
    req: Request,
    next: Next,
) -> Response {
    admit(&state, req, next, Scope::Jobs).await
}

/// Lets a request with a key of `scope` (or none where keys are not required) through.
async fn admit(state: &Node, mut req: Request, next: Next, scope: Scope) -> Response {
    let checked = state
        .access
        .check(bearer(req.headers()), scope, state.auth_required);
    let (caller, decision) = match checked {
        Ok(ok) => ok,
        Err(denied) => {
            let path = req.uri().path().to_string();
            return refusal(state, denied, &path);
        }
    };
    req.extensions_mut().insert(caller);
    let mut response = next.run(req).await;
    if let Some(d) = decision {
        set_rate_headers(response.headers_mut(), &d);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  k1 "),
        );
        assert_eq!(bearer(&h), Some("k1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
