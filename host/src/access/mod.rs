//! Who may do what, for every transport alike: the caller a request runs as, API-key scopes,
//! the in-memory [`keyring::Keyring`] keys are checked against, and per-key rate windows.
//! Transports present the bearer token they received and map a [`Denied`] to their own
//! error (HTTP in `server::auth`, gRPC in `grpc::auth`).

pub mod keyring;
mod limiter;

pub use crate::store::keys::{KeyRecord, Scope};
pub use limiter::{Decision, RateLimiter};

use keyring::Keyring;
use std::sync::Arc;

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The node's operator: its own config file, or its user on the control socket. May do
    /// anything, and choose any load option.
    Operator,
    /// No key, where none is required (the operator's own loopback node): may do anything
    /// a key may, within `[limits]`.
    Anonymous,
    /// A valid key.
    Key(Arc<KeyRecord>),
}

impl Caller {
    /// Whether the caller may use the model named `model`.
    pub fn may_use(&self, model: &str) -> bool {
        match self {
            Caller::Operator | Caller::Anonymous => true,
            Caller::Key(k) => k.models.is_empty() || k.models.iter().any(|m| m == model),
        }
    }

    /// Whether the caller holds `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        match self {
            Caller::Operator | Caller::Anonymous => true,
            Caller::Key(k) => k.allows(scope),
        }
    }

    /// The key's name for logs and the audit log, `-` without a key.
    pub fn name(&self) -> &str {
        match self {
            Caller::Operator => "operator",
            Caller::Anonymous => "-",
            Caller::Key(k) => &k.name,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Denied {
    /// No key where one is required.
    #[error("no API key was sent; send it as `Authorization: Bearer KEY` (create one with `cyxwiz-node keys create --name NAME`)")]
    Missing,
    /// The key is unknown or revoked.
    #[error("incorrect API key provided: {shown}****; the key is unknown or revoked")]
    Unknown {
        /// The key's first characters.
        shown: String,
    },
    /// The key lacks the scope.
    #[error("API key `{key}` lacks the `{scope}` scope (create a key with `--scopes {scope}`)")]
    Scope {
        /// The key's name.
        key: String,
        /// The scope needed.
        scope: Scope,
    },
    /// The key's requests per minute are used up.
    #[error("rate limit reached for key `{key}`: {} requests per minute; retry in {} s", decision.limit, decision.reset.as_secs().max(1))]
    RateLimited {
        /// The key's name.
        key: String,
        /// The window.
        decision: Decision,
    },
}

impl Denied {
    /// The audit event for this refusal: its kind and subject (a key's name or shown prefix).
    pub fn audit_event(&self) -> (&'static str, &str) {
        match self {
            Denied::Missing => ("auth_failed", "-"),
            Denied::Unknown { shown } => ("auth_failed", shown),
            Denied::Scope { key, .. } => ("auth_failed", key),
            Denied::RateLimited { key, .. } => ("rate_limited", key),
        }
    }
}

/// The first characters of a presented key, for messages and the audit log (never more).
pub fn shown(key: &str) -> String {
    key.chars()
        .take(12)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// The keyring and the rate windows, shared by every transport.
#[derive(Debug)]
pub struct Access {
    /// Active keys.
    pub keyring: Arc<Keyring>,
    /// Per-key rate windows.
    pub limiter: RateLimiter,
}

impl Access {
    /// Access over `keyring`.
    pub fn new(keyring: Arc<Keyring>) -> Self {
        Self {
            keyring,
            limiter: RateLimiter::default(),
        }
    }

    /// Decides a request that presented `key` (if any) and needs `scope`. Where keys are not
    /// `required`, no key or an unknown key is [`Caller::Anonymous`] (OpenAI clients always
    /// send one), while a known key still brings its scopes, limits and models. Returns the
    /// caller and its rate window when the key has a limit.
    pub fn check(
        &self,
        key: Option<&str>,
        scope: Scope,
        required: bool,
    ) -> Result<(Caller, Option<Decision>), Denied> {
        let Some(key) = key else {
            return if required {
                Err(Denied::Missing)
            } else {
                Ok((Caller::Anonymous, None))
            };
        };
        let Some(record) = self.keyring.lookup(key) else {
            return if required {
                Err(Denied::Unknown { shown: shown(key) })
            } else {
                Ok((Caller::Anonymous, None))
            };
        };
        if !record.allows(scope) {
            return Err(Denied::Scope {
                key: record.name.clone(),
                scope,
            });
        }
        let decision = (record.rpm > 0).then(|| self.limiter.check(record.id, record.rpm));
        if let Some(d) = decision.filter(|d| !d.allowed) {
            return Err(Denied::RateLimited {
                key: record.name.clone(),
                decision: d,
            });
        }
        Ok((Caller::Key(record), decision))
    }
}

/// The token of an `Authorization: Bearer TOKEN` header value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn scopes_limits_and_anonymous_callers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let store = Store::open(&path).unwrap();
        let (infer, _) = store.create_key("i", &[], &[], 2).unwrap();
        let (deploy, _) = store.create_key("d", &[Scope::Deploy], &[], 0).unwrap();
        let access = Access::new(Arc::new(Keyring::open(&path).unwrap()));
        assert!(matches!(
            access.check(None, Scope::Inference, true),
            Err(Denied::Missing)
        ));
        assert!(matches!(
            access.check(None, Scope::Deploy, false),
            Ok((Caller::Anonymous, None))
        ));
        assert!(matches!(
            access.check(Some("cyx-nope"), Scope::Inference, true),
            Err(Denied::Unknown { .. })
        ));
        let denied = access
            .check(Some(&infer), Scope::Deploy, false)
            .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "API key `i` lacks the `deploy` scope (create a key with `--scopes deploy`)"
        );
        assert!(access.check(Some(&deploy), Scope::Deploy, true).is_ok());
        assert!(access.check(Some(&deploy), Scope::Inference, true).is_err());
        for _ in 0..2 {
            assert!(access.check(Some(&infer), Scope::Inference, true).is_ok());
        }
        assert!(matches!(
            access.check(Some(&infer), Scope::Inference, true),
            Err(Denied::RateLimited { .. })
        ));
    }

    #[test]
    fn bearer_tokens_are_parsed_case_insensitively() {
        assert_eq!(bearer("bearer  k1 "), Some("k1"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(shown("cyx-0123456789abcdef"), "cyx-01234567");
        assert_eq!(shown("a\nb"), "a?b");
    }
}
