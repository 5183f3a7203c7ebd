//! API keys in the store: created once and shown once (`cyx-` + 64 hex digits of OS
//! randomness), kept only as SHA-256 hashes, with scopes (what the key may do), an optional
//! model allow-list and a requests-per-minute limit; revocation is a timestamp, which a
//! running node's keyring ([`crate::access`]) notices on its next request.

use super::{Store, StoreError};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What a key may do. `admin` implies every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Call models: the OpenAI API, gRPC `InferenceService`, reading deployments.
    Inference,
    /// Create, stop and delete deployments (gRPC `DeploymentService`).
    Deploy,
    /// Submit and manage jobs.
    Jobs,
    /// Open terminal sessions.
    Terminal,
    /// Everything, including node administration.
    Admin,
}

impl Scope {
    /// Every scope, in the order they are listed.
    pub const ALL: [Scope; 5] = [
        Scope::Inference,
        Scope::Deploy,
        Scope::Jobs,
        Scope::Terminal,
        Scope::Admin,
    ];

    /// The scope's name as keys list and accept it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Inference => "inference",
            Scope::Deploy => "deploy",
            Scope::Jobs => "jobs",
            Scope::Terminal => "terminal",
            Scope::Admin => "admin",
        }
    }

    /// The scope called `name`.
    pub fn parse(name: &str) -> Result<Scope, KeyError> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == name.trim())
            .ok_or_else(|| KeyError::BadScope(name.to_string()))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the node knows about a key (never the key itself).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyRecord {
    /// Row id.
    pub id: i64,
    /// Operator-chosen name.
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Models it may use; empty means all.
    pub models: Vec<String>,
    /// Requests per minute; 0 means unlimited.
    pub rpm: u32,
    /// When it was created (UTC, ISO 8601).
    pub created_at: String,
    /// When it was last used.
    pub last_used_at: Option<String>,
    /// Requests made with it.
    pub request_count: u64,
    /// When it was revoked.
    pub revoked_at: Option<String>,
}

/// SHA-256 of a key, hex.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl KeyRecord {
    /// Whether the key grants `scope` (`admin` grants all).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes
            .iter()
            .any(|s| *s == scope || *s == Scope::Admin)
    }
}

const COLUMNS: &str =
    "id, name, prefix, models, rpm, created_at, last_used_at, request_count, revoked_at, scopes";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    let models: String = r.get(3)?;
    Ok(KeyRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        models: models
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect(),
        rpm: r.get(4)?,
        created_at: r.get(5)?,
        last_used_at: r.get(6)?,
        request_count: r.get::<_, i64>(7)?.max(0) as u64,
        revoked_at: r.get(8)?,
        // An unknown name (written by a newer node) grants nothing rather than failing.
        scopes: r
            .get::<_, String>(9)?
            .split(',')
            .filter_map(|s| Scope::parse(s).ok())
            .collect(),
    })
}

/// Why a key operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The name is taken by a key not revoked.
    #[error("a key named `{0}` already exists (revoke it first or pick another name)")]
    Exists(String),
    /// No such key.
    #[error("no active key named `{0}`")]
    NotFound(String),
    /// Bad name.
    #[error("invalid key name `{0}`: use 1-64 letters, digits, `-`, `_` or `.`")]
    BadName(String),
    /// Unknown scope.
    #[error("unknown scope `{0}`: use inference, deploy, jobs, terminal or admin")]
    BadScope(String),
    /// The OS random source failed.
    #[error("cannot generate a key: {0}")]
    Random(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Creates a key; returns the key text (shown once) and its record.
    pub fn create_key(
        &self,
        name: &str,
        scopes: &[Scope],
        models: &[String],
        rpm: u32,
    ) -> Result<(String, KeyRecord), KeyError> {
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            scopes.push(Scope::Inference);
        }
        let scopes_text = scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(KeyError::BadName(name.to_string()));
        }
        if self.active_key(name)?.is_some() {
            return Err(KeyError::Exists(name.to_string()));
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        let key: String = std::iter::once("cyx-".to_string())
            .chain(bytes.iter().map(|b| format!("{b:02x}")))
            .collect();
        let prefix = key[..12].to_string();
        self.conn
            .execute(
                "INSERT INTO api_keys (name, prefix, hash, models, rpm, scopes, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%Y-%m-%dT%H:%M:%SZ','now'))",
                params![
                    name,
                    prefix,
                    hash_key(&key),
                    models.join(","),
                    rpm,
                    scopes_text
                ],
            )
            .map_err(|e| self.wrap(e))?;
        self.audit(
            "key_created",
            name,
            &format!("prefix {prefix}, scopes {scopes_text}"),
        )?;
        let record = self
            .active_key(name)?
            .ok_or_else(|| KeyError::NotFound(name.to_string()))?;
        Ok((key, record))
    }

    fn active_key(&self, name: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM api_keys WHERE name = ?1 AND revoked_at IS NULL"),
                params![name],
                record,
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }

    /// Every key, newest first, revoked ones included.
    pub fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY id DESC"))
            .map_err(|e| self.wrap(e))?;
        let rows = stmt.query_map([], record).map_err(|e| self.wrap(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// Revokes the active key called `name`.
    pub fn revoke_key(&self, name: &str) -> Result<(), KeyError> {
        let changed = self
            .conn
            .execute(
                "UPDATE api_keys SET revoked_at = strftime('%Y-%m-%dT%H:%M:%SZ','now')
                 WHERE name = ?1 AND revoked_at IS NULL",
                params![name],
            )
            .map_err(|e| self.wrap(e))?;
        if changed == 0 {
            return Err(KeyError::NotFound(name.to_string()));
        }
        self.audit("key_revoked", name, "")?;
        Ok(())
    }

    /// Every active key with its hash, for the node's keyring.
    pub fn active_keys(&self) -> Result<Vec<(String, KeyRecord)>, StoreError> {
        Self::active_keys_on(&self.conn, std::path::Path::new(&self.path))
    }

    /// [`Store::active_keys`] on another connection to the database at `path`.
    pub fn active_keys_on(
        conn: &rusqlite::Connection,
        path: &std::path::Path,
    ) -> Result<Vec<(String, KeyRecord)>, StoreError> {
        let wrap = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS}, hash FROM api_keys WHERE revoked_at IS NULL"
            ))
            .map_err(wrap)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(10)?, record(r)?)))
            .map_err(wrap)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(wrap)
    }

    /// Adds `uses` requests to the counters of the keys by id, in one transaction, and sets
    /// their last use to now.
    pub fn add_key_usage(&mut self, uses: &[(i64, u64)]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(wrap)?;
        {
            let mut stmt = tx
                .prepare(
                    "UPDATE api_keys SET request_count = request_count + ?2,
                     last_used_at = strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE id = ?1",
                )
                .map_err(wrap)?;
            for (id, n) in uses {
                stmt.execute(params![id, i64::try_from(*n).unwrap_or(i64::MAX)])
                    .map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hashed_listed_used_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("node.db")).unwrap();
        let (key, rec) = store.create_key("ci", &[], &["chat".into()], 60).unwrap();
        assert!(key.starts_with("cyx-") && key.len() == 68, "{key}");
        assert_eq!(rec.prefix, &key[..12]);
        assert_eq!(rec.models, vec!["chat".to_string()]);
        // No scopes asked: inference only.
        assert_eq!(rec.scopes, vec![Scope::Inference]);
        assert!(rec.allows(Scope::Inference) && !rec.allows(Scope::Deploy));
        assert!(matches!(
            store.create_key("ci", &[], &[], 0),
            Err(KeyError::Exists(_))
        ));
        assert!(matches!(
            store.create_key("bad name", &[], &[], 0),
            Err(KeyError::BadName(_))
        ));
        assert!(matches!(Scope::parse("root"), Err(KeyError::BadScope(_))));
        let (_, admin) = store
            .create_key("ops", &[Scope::Admin, Scope::Deploy, Scope::Admin], &[], 0)
            .unwrap();
        assert_eq!(admin.scopes, vec![Scope::Deploy, Scope::Admin]);
        assert!(admin.allows(Scope::Terminal));
        // Only the hash is stored.
        let stored: String = store
            .conn
            .query_row("SELECT hash FROM api_keys WHERE name = 'ci'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, hash_key(&key));
        assert!(!stored.contains(&key[4..]));

        let active = store.active_keys().unwrap();
        assert_eq!(active.len(), 2);
        let (hash, ci) = active.iter().find(|(_, k)| k.name == "ci").unwrap();
        assert_eq!(hash, &hash_key(&key));
        store.add_key_usage(&[(ci.id, 3)]).unwrap();
        let listed = store.list_keys().unwrap();
        let ci = listed.iter().find(|k| k.name == "ci").unwrap();
        assert_eq!(ci.request_count, 3);
        assert!(ci.last_used_at.is_some());

        store.revoke_key("ci").unwrap();
        assert!(store
            .active_keys()
            .unwrap()
            .iter()
            .all(|(_, k)| k.name != "ci"));
        assert!(matches!(store.revoke_key("ci"), Err(KeyError::NotFound(_))));
        // The name is free again once revoked.
        store.create_key("ci", &[], &[], 0).unwrap();
        let kinds: Vec<String> = store
            .recent_audit(10)
            .unwrap()
            .into_iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(
            kinds,
            ["key_created", "key_created", "key_revoked", "key_created"]
                .map(String::from)
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
        );
    }
}
