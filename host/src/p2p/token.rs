//! The P2P token: an HS256 JWT the central server issues with each reservation
//! (`{sub, job_id, node_id, iat, exp, iss}`), checked on every Engine call. The signature, the
//! issuer, our node id and the token's age by `iat` are checked (the server's `exp` is computed
//! wrongly and lies decades ahead, so it is only honoured when it is already past), and each
//! call's job id must be the reservation's or one of its later jobs (`<reservation>_<suffix>`).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// The issuer the central server writes.
pub const ISSUER: &str = "CyxWiz-Central-Server";
/// The longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Clock skew tolerated for `iat` in the future, in seconds.
const SKEW: i64 = 60;

/// Why a token is refused (each becomes `UNAUTHENTICATED`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was sent.
    #[error("no P2P token: send `authorization: Bearer <token from ReserveNode>`")]
    Missing,
    /// This node has no secret to check tokens with.
    #[error("this node does not take P2P jobs: [p2p] jwt_secret is not set")]
    NoSecret,
    /// Not three base64url parts, bad JSON, or too long.
    #[error("the P2P token is malformed: {0}")]
    Malformed(&'static str),
    /// Not HS256.
    #[error("the P2P token's algorithm {0:?} is not HS256")]
    Algorithm(String),
    /// The signature does not match our secret.
    #[error("the P2P token's signature does not match (is [p2p] jwt_secret the central server's secret?)")]
    Signature,
    /// Another issuer.
    #[error("the P2P token was issued by {0:?}, not {ISSUER:?}")]
    Issuer(String),
    /// Issued for another node.
    #[error("the P2P token is for node {0}, not this node")]
    OtherNode(String),
    /// `iat` is missing, in the future, or too old.
    #[error("the P2P token is {0}")]
    Age(String),
    /// No reservation in it.
    #[error("the P2P token names no job_id")]
    NoJob,
}

/// The claims this node relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user's wallet.
    pub sub: String,
    /// The reservation id (also the first job's id).
    pub job_id: String,
    /// When it was issued (Unix seconds).
    pub iat: i64,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    job_id: String,
    #[serde(default)]
    node_id: String,
    #[serde(default)]
    iss: String,
    iat: Option<i64>,
    exp: Option<i64>,
}

/// What a token is checked against.
#[derive(Debug, Clone)]
pub struct Verifier {
    secret: Vec<u8>,
    max_age: i64,
}

fn b64(part: &str) -> Result<Vec<u8>, TokenError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("a part is not base64url"))
}

impl Verifier {
    /// A verifier for `secret`, accepting tokens up to `max_age_seconds` old.
    pub fn new(secret: &str, max_age_seconds: u64) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
            max_age: i64::try_from(max_age_seconds).unwrap_or(i64::MAX),
        }
    }

    /// Checks `token` for node `node_id` at Unix time `now`.
    pub fn verify(&self, token: &str, node_id: &str, now: i64) -> Result<Claims, TokenError> {
        if self.secret.is_empty() {
            return Err(TokenError::NoSecret);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("longer than 4096 bytes"));
        }
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated parts"));
        };
        let header: Header = serde_json::from_slice(&b64(head)?)
            .map_err(|_| TokenError::Malformed("the header is not JSON with `alg`"))?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm(header.alg.chars().take(16).collect()));
        }
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).map_err(|_| TokenError::NoSecret)?;
        mac.update(head.as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        mac.verify_slice(&b64(sig)?)
            .map_err(|_| TokenError::Signature)?;
        let claims: RawClaims = serde_json::from_slice(&b64(body)?)
            .map_err(|_| TokenError::Malformed("the claims are not a JSON object"))?;
        if claims.iss != ISSUER {
            return Err(TokenError::Issuer(claims.iss.chars().take(64).collect()));
        }
        if claims.node_id != node_id {
            return Err(TokenError::OtherNode(
                claims.node_id.chars().take(64).collect(),
            ));
        }
        let Some(iat) = claims.iat else {
            return Err(TokenError::Age("without `iat`".into()));
        };
        if iat > now + SKEW {
            return Err(TokenError::Age(format!(
                "issued {} s in the future",
                iat - now
            )));
        }
        if now - iat > self.max_age {
            return Err(TokenError::Age(format!(
                "{} s old, over [p2p] max_token_age_seconds = {}",
                now - iat,
                self.max_age
            )));
        }
        if claims.exp.is_some_and(|exp| exp < now) {
            return Err(TokenError::Age("expired".into()));
        }
        if claims.job_id.is_empty() {
            return Err(TokenError::NoJob);
        }
        Ok(Claims {
            sub: claims.sub.chars().take(128).collect(),
            job_id: claims.job_id,
            iat,
        })
    }
}

/// Whether `job_id` belongs to the reservation `reservation`: the reservation's own id or
/// `<reservation>_<suffix>` with a short alphanumeric suffix (the Engine uses Unix seconds).
pub fn job_in_reservation(job_id: &str, reservation: &str) -> bool {
    if job_id == reservation {
        return true;
    }
    job_id
        .strip_prefix(reservation)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|suffix| {
            !suffix.is_empty()
                && suffix.len() <= 32
                && suffix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Mints a token (for tests and tools that play the central server).
pub fn mint(secret: &str, claims: &serde_json::Value) -> String {
    let enc = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let head = enc(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = enc(claims.to_string().as_bytes());
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(head.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let sig = enc(&mac.finalize().into_bytes());
    format!("{head}.{body}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NODE: &str = "6f1d0c1e-1111-4000-8000-000000000001";
    const RES: &str = "9a1b2c3d-2222-4000-8000-000000000002";

    fn claims(iat: i64) -> serde_json::Value {
        json!({"sub": "wallet", "job_id": RES, "node_id": NODE, "iat": iat,
               "exp": iat + 1_700_000_000_i64, "iss": ISSUER})
    }

    #[test]
    fn a_good_token_passes_and_each_fault_is_named() {
        let v = Verifier::new("s3cret", 3600);
        let now = 1_800_000_000;
        let good = mint("s3cret", &claims(now - 10));
        let c = v.verify(&good, NODE, now).unwrap();
        assert_eq!((c.job_id.as_str(), c.sub.as_str()), (RES, "wallet"));
        assert_eq!(
            v.verify(&mint("other", &claims(now)), NODE, now),
            Err(TokenError::Signature)
        );
        assert!(matches!(
            v.verify(&good, "another-node", now),
            Err(TokenError::OtherNode(_))
        ));
        assert!(matches!(
            v.verify(&mint("s3cret", &claims(now - 7200)), NODE, now),
            Err(TokenError::Age(_))
        ));
        assert!(matches!(
            v.verify(&mint("s3cret", &claims(now + 600)), NODE, now),
            Err(TokenError::Age(_))
        ));
        let mut foreign = claims(now);
        foreign["iss"] = json!("someone");
        assert!(matches!(
            v.verify(&mint("s3cret", &foreign), NODE, now),
            Err(TokenError::Issuer(_))
        ));
        assert_eq!(v.verify("", NODE, now), Err(TokenError::Missing));
        assert!(matches!(
            v.verify("a.b", NODE, now),
            Err(TokenError::Malformed(_))
        ));
        assert_eq!(
            Verifier::new("", 10).verify(&good, NODE, now),
            Err(TokenError::NoSecret)
        );
        // alg=none with the signature stripped is refused.
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            good.split('.').nth(1).unwrap()
        );
        assert!(matches!(
            v.verify(&none, NODE, now),
            Err(TokenError::Algorithm(_))
        ));
        // A tampered body breaks the signature.
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut evil = claims(now);
        evil["job_id"] = json!("another-reservation");
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(evil.to_string());
        parts[1] = &body;
        assert_eq!(
            v.verify(&parts.join("."), NODE, now),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn jobs_of_a_reservation() {
        assert!(job_in_reservation(RES, RES));
        assert!(job_in_reservation(&format!("{RES}_1764620000"), RES));
        assert!(!job_in_reservation(&format!("{RES}_"), RES));
        assert!(!job_in_reservation(&format!("{RES}_a/b"), RES));
        assert!(!job_in_reservation(&format!("{RES}x_1"), RES));
        assert!(!job_in_reservation("9a1b2c3d-other", RES));
    }

    #[test]
    fn matches_a_known_hs256_vector() {
        // RFC 7515 appendix-style check with the well-known jwt.io HS256 example.
        let secret = "your-256-bit-secret";
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        // The signature matches; the claims then fail on the issuer (it has none).
        assert!(matches!(
            Verifier::new(secret, 10).verify(token, NODE, 1_516_239_022),
            Err(TokenError::Issuer(_))
        ));
        assert_eq!(
            Verifier::new("wrong", 10).verify(token, NODE, 1_516_239_022),
            Err(TokenError::Signature)
        );
    }
}
