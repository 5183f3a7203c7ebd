//! `[api]`: the HTTP API's address, keys, TLS and the bounds on each request and
//! connection (validated with the rest in `validate`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[api]`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Serve HTTP at all.
    pub enabled: bool,
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// Require an API key on loopback too (always required on other addresses).
    pub require_auth: bool,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Origins allowed by CORS (`*` for any); empty turns CORS off.
    pub cors_origins: Vec<String>,
    /// Host names the `Host` header may carry (any port; `*` for any). Empty: automatic,
    /// i.e. `localhost`, `127.0.0.1`, `[::1]` and `host` on a loopback address (against DNS
    /// rebinding), any beyond loopback (where keys are required anyway).
    pub allowed_hosts: Vec<String>,
    /// Seconds a client may take to send a request's headers; also how long an idle
    /// keep-alive connection stays open. The connection is closed beyond it.
    pub header_timeout_seconds: u64,
    /// Seconds a client may take to send a request body (408 beyond). Responses, streams
    /// included, are not bounded by it.
    pub body_timeout_seconds: u64,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Seconds open connections get to finish when the node stops; then they are dropped.
    pub shutdown_grace_seconds: u64,
    /// Most numbers one `/v1/predict` request may carry across its JSON tensors (400
    /// beyond); the default is what the default 8 MiB body can hold.
    pub max_tensor_elements: usize,
    /// Most inputs (texts or token arrays) of one `/v1/embeddings` request (400 beyond).
    pub max_embedding_inputs: usize,
    /// Most tokens, padding included (rows times the longest row), an embedding model is run
    /// on at once: a request's inputs are split into runs of at most this many, so memory stays
    /// bounded however many inputs it has. An input longer than this runs alone.
    pub max_batch_tokens: usize,
    /// `[api.tls]`
    pub tls: TlsSection,
}

/// `[api.tls]`: HTTPS with rustls.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Serve HTTPS instead of HTTP.
    pub enabled: bool,
    /// PEM certificate chain.
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

impl ApiSection {
    /// Whether requests must carry an API key: always when listening beyond loopback.
    pub fn auth_required(&self) -> bool {
        let loopback = self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        self.require_auth || !loopback
    }
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            enabled: true,
            host: "127.0.0.1".to_string(),
            port: 8000,
            require_auth: false,
            max_body_bytes: 8 << 20,
            cors_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            header_timeout_seconds: 10,
            body_timeout_seconds: 30,
            max_connections: 2048,
            shutdown_grace_seconds: 10,
            max_tensor_elements: 4 << 20,
            max_embedding_inputs: 256,
            max_batch_tokens: 8192,
            tls: TlsSection::default(),
        }
    }
}
