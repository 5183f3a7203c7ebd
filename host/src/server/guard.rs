//! Guards against the API being driven from a web page: the `Host` allow-list (DNS
//! rebinding: a page whose name an attacker points at 127.0.0.1 still sends its own name as
//! `Host`) and JSON-only request bodies (a page may POST `text/plain` anywhere without a CORS
//! preflight, but not `application/json`). CORS itself is configured in the parent module.

use crate::{config::ApiSection, openai::ApiError};
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::{net::IpAddr, sync::Arc};

/// Which `Host` names requests may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    /// Any name (`*`, or the automatic policy beyond loopback, where keys are required).
    Any,
    /// Only these names (lowercase, IPv6 literals in brackets), with any port.
    Only(Arc<[String]>),
}

impl HostPolicy {
    /// The policy `[api] allowed_hosts` sets; empty means `localhost`, `127.0.0.1`, `[::1]`
    /// and `[api] host` on a loopback address, any name beyond loopback.
    pub fn from_api(api: &ApiSection) -> Self {
        if api.allowed_hosts.iter().any(|h| h.trim() == "*") {
            return Self::Any;
        }
        let names: Vec<String> = if api.allowed_hosts.is_empty() {
            let loopback = api.host == "localhost"
                || api.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Self::Any;
            }
            ["localhost", "127.0.0.1", "[::1]", api.host.as_str()]
                .iter()
                .map(|h| host_name(h))
                .collect()
        } else {
            api.allowed_hosts.iter().map(|h| host_name(h)).collect()
        };
        Self::Only(names.into())
    }

    /// Whether a request naming `authority` (`name` or `name:port`) may be served.
    pub fn allows(&self, authority: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(names) => {
                let name = host_name(authority);
                names.contains(&name)
            }
        }
    }
}

/// The name part of `name[:port]`, `[v6]:port` or a bare IPv6 literal: lowercase, without
/// a trailing dot, IPv6 in brackets.
fn host_name(authority: &str) -> String {
    let authority = authority.trim();
    let name = if authority.starts_with('[') {
        authority
            .split_once(']')
            .map_or(authority.to_string(), |(v6, _)| format!("{v6}]"))
    } else if let Ok(IpAddr::V6(ip)) = authority.parse::<IpAddr>() {
        format!("[{ip}]")
    } else {
        authority
            .split_once(':')
            .map_or(authority, |(name, _)| name)
            .to_string()
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The name a request is addressed to: the URI's authority (absolute form) or `Host`.
fn authority(req: &Request) -> Option<Result<&str, ()>> {
    if let Some(a) = req.uri().authority() {
        return Some(Ok(a.as_str()));
    }
    req.headers()
        .get(header::HOST)
        .map(|v| v.to_str().map_err(|_| ()))
}

/// Middleware refusing requests whose `Host` the policy does not allow (403). Requests
/// without any (HTTP/1.0 tools; never a browser) pass.
pub async fn check_host(State(policy): State<HostPolicy>, req: Request, next: Next) -> Response {
    let refused = match authority(&req) {
        None => None,
        Some(Ok(host)) if policy.allows(host) => None,
        Some(Ok(host)) => Some(host.chars().take(100).collect::<String>()),
        Some(Err(())) => Some("(not text)".to_string()),
    };
    let Some(host) = refused else {
        return next.run(req).await;
    };
    tracing::debug!(host = %host, path = %req.uri().path(), "request for a host not allowed");
    let mut e = ApiError::invalid(format!(
        "requests for host `{host}` are not served here; a loopback node answers only \
         localhost, 127.0.0.1 and [::1] unless the name is listed in [api] allowed_hosts"
    ));
    e.status = StatusCode::FORBIDDEN;
    e.code = Some("host_not_allowed");
    e.into_response()
}

/// Whether `Content-Type` is `application/json` (parameters such as `charset` allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Middleware on routes taking JSON: a POST, PUT or PATCH must say `Content-Type:
/// application/json` (415 otherwise), so no web page can send one without a CORS preflight.
pub async fn json_bodies(req: Request, next: Next) -> Response {
    let has_body = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    if !has_body || is_json(req.headers()) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| {
            let text: String = String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(100)
                .collect();
            format!("`{text}`")
        })
        .unwrap_or_else(|| "none".to_string());
    let mut e = ApiError::invalid(format!(
        "Content-Type must be application/json, got {given}"
    ));
    e.status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    e.code = Some("unsupported_media_type");
    e.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(host: &str, allowed: &[&str]) -> ApiSection {
        ApiSection {
            host: host.into(),
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
            ..ApiSection::default()
        }
    }

    #[test]
    fn a_loopback_node_answers_only_loopback_names_by_default() {
        let policy = HostPolicy::from_api(&api("127.0.0.1", &[]));
        for ok in [
            "localhost",
            "localhost:8000",
            "LOCALHOST.:8000",
            "127.0.0.1:1",
            "[::1]:8000",
            "[::1]",
        ] {
            assert!(policy.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8000",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "x",
            "",
            "[::2]:8000",
        ] {
            assert!(!policy.allows(bad), "{bad}");
        }
        // The configured address is allowed too.
        assert!(HostPolicy::from_api(&api("127.0.0.2", &[])).allows("127.0.0.2:80"));
        assert!(HostPolicy::from_api(&api("::1", &[])).allows("[::1]:80"));
    }

    #[test]
    fn beyond_loopback_or_with_a_star_any_name_passes_and_a_list_is_exact() {
        assert_eq!(HostPolicy::from_api(&api("0.0.0.0", &[])), HostPolicy::Any);
        assert_eq!(HostPolicy::from_api(&api("::", &[])), HostPolicy::Any);
        assert_eq!(
            HostPolicy::from_api(&api("127.0.0.1", &["*"])),
            HostPolicy::Any
        );
        let listed = HostPolicy::from_api(&api("0.0.0.0", &["API.example.com", "::1"]));
        assert!(listed.allows("api.example.com:443"));
        assert!(listed.allows("[::1]:8000"));
        assert!(!listed.allows("localhost"));
        assert!(!listed.allows("example.com"));
    }

    #[test]
    fn json_content_types_are_recognised_with_parameters() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
            ("application/jsonx", false),
        ] {
            h.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_json(&h), json, "{value}");
        }
    }
}
