//! API-key authentication and per-key rate limits for `/v1`: `Authorization: Bearer KEY`
//! checked against the store's hashes on every request (so revocation is immediate; when
//! auth is not required an unknown key is treated as no key), a
//! fixed one-minute window per key with OpenAI's `x-ratelimit-*` headers, `Retry-After` on
//! 429, and audit events for failures and limit hits.

use super::AppState;
use crate::{openai::ApiError, store::keys::KeyRecord};
use axum::{
    extract::{FromRequestParts, Request, State},
    http::{header, request::Parts, HeaderMap, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No key (loopback without `require_auth`).
    Anonymous,
    /// A valid key.
    Key(Arc<KeyRecord>),
}

impl Caller {
    /// Whether the caller may use the model named `model`.
    pub fn may_use(&self, model: &str) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Key(k) => k.models.is_empty() || k.models.iter().any(|m| m == model),
        }
    }
}

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

/// One key's current window.
#[derive(Debug)]
struct Window {
    start: Instant,
    count: u32,
}

/// The outcome of a rate check.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// Allowed this request.
    pub allowed: bool,
    /// The limit per minute.
    pub limit: u32,
    /// Requests left in this window.
    pub remaining: u32,
    /// Until the window resets.
    pub reset: Duration,
}

/// Fixed one-minute windows per key.
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<i64, Window>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl RateLimiter {
    /// Counts a request of key `id` with a limit of `rpm` per minute.
    pub fn check(&self, id: i64, rpm: u32) -> Decision {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry(id).or_insert(Window {
            start: now,
            count: 0,
        });
        if now.duration_since(w.start) >= WINDOW {
            w.start = now;
            w.count = 0;
        }
        let allowed = w.count < rpm;
        if allowed {
            w.count += 1;
        }
        Decision {
            allowed,
            limit: rpm,
            remaining: rpm.saturating_sub(w.count),
            reset: WINDOW.saturating_sub(now.duration_since(w.start)),
        }
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

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

/// Shown prefix of a presented key, for the audit log (never the whole key).
fn shown(key: &str) -> String {
    key.chars().take(12).collect()
}

/// The middleware on `/v1` routes.
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    let key = bearer(req.headers()).map(str::to_string);
    let Some(key) = key else {
        if state.auth_required {
            state.audit("auth_failed", "-", &format!("no key for {path}"));
            return ApiError::unauthorized(
                "You didn't provide an API key. Send it as `Authorization: Bearer KEY` \
                 (create one with `cyxwiz-node keys create --name NAME`).",
            )
            .into_response();
        }
        return next.run(req).await;
    };
    let found = {
        let store = state.store.lock().unwrap_or_else(|p| p.into_inner());
        store.use_key(&key)
    };
    let record = match found {
        Ok(Some(record)) => Arc::new(record),
        // Without required auth an unknown key is anonymous (OpenAI clients always send
        // one); a known key still brings its limits and model list.
        Ok(None) if !state.auth_required => return next.run(req).await,
        Ok(None) => {
            state.audit(
                "auth_failed",
                &shown(&key),
                &format!("unknown or revoked key for {path}"),
            );
            return ApiError::unauthorized(format!(
                "Incorrect API key provided: {}****. The key is unknown or revoked.",
                shown(&key)
            ))
            .into_response();
        }
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let decision = (record.rpm > 0).then(|| state.limiter.check(record.id, record.rpm));
    if let Some(d) = decision.filter(|d| !d.allowed) {
        state.audit("rate_limited", &record.name, &path);
        let mut response = ApiError::rate_limited(
            format!(
                "Rate limit reached for key `{}`: {} requests per minute. Retry in {} s.",
                record.name,
                d.limit,
                d.reset.as_secs().max(1)
            ),
            d.reset.as_secs().max(1),
        )
        .into_response();
        set_rate_headers(response.headers_mut(), &d);
        return response;
    }
    req.extensions_mut().insert(Caller::Key(record));
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
    fn a_window_allows_rpm_requests_then_refuses_until_it_resets() {
        let limiter = RateLimiter::default();
        for i in 0..3 {
            let d = limiter.check(7, 3);
            assert!(d.allowed);
            assert_eq!(d.remaining, 2 - i);
        }
        let d = limiter.check(7, 3);
        assert!(!d.allowed);
        assert!(d.reset <= WINDOW && d.reset > Duration::from_secs(50));
        // Other keys have their own window.
        assert!(limiter.check(8, 3).allowed);
    }

    #[test]
    fn bearer_tokens_are_parsed_case_insensitively() {
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
