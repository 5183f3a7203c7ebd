//! API keys in the store: created once and shown once (`cyx-` + 64 hex digits of OS
//! randomness), kept only as SHA-256 hashes, with an optional model allow-list and a
//! requests-per-minute limit; revocation is a timestamp, so it takes effect on the next
//! request of a running node.

use super::{Store, StoreError};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What the node knows about a key (never the key itself).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyRecord {
    /// Row id.
    pub id: i64,
    /// Operator-chosen name.
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
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

const COLUMNS: &str =
    "id, name, prefix, models, rpm, created_at, last_used_at, request_count, revoked_at";

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
        models: &[String],
        rpm: u32,
    ) -> Result<(String, KeyRecord), KeyError> {
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
                "INSERT INTO api_keys (name, prefix, hash, models, rpm, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%SZ','now'))",
                params![name, prefix, hash_key(&key), models.join(","), rpm],
            )
            .map_err(|e| self.wrap(e))?;
        self.audit("key_created", name, &format!("prefix {prefix}"))?;
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

    /// The active key whose text is `key`, counting the use.
    pub fn use_key(&self, key: &str) -> Result<Option<KeyRecord>, StoreError> {
        let hash = hash_key(key);
        let found = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL"),
                params![hash],
                record,
            )
            .optional()
            .map_err(|e| self.wrap(e))?;
        if let Some(k) = &found {
            self.conn
                .execute(
                    "UPDATE api_keys SET request_count = request_count + 1,
                     last_used_at = strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE id = ?1",
                    params![k.id],
                )
                .map_err(|e| self.wrap(e))?;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hashed_listed_used_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        let (key, rec) = store.create_key("ci", &["chat".into()], 60).unwrap();
        assert!(key.starts_with("cyx-") && key.len() == 68, "{key}");
        assert_eq!(rec.prefix, &key[..12]);
        assert_eq!(rec.models, vec!["chat".to_string()]);
        assert!(matches!(
            store.create_key("ci", &[], 0),
            Err(KeyError::Exists(_))
        ));
        assert!(matches!(
            store.create_key("bad name", &[], 0),
            Err(KeyError::BadName(_))
        ));
        // Only the hash is stored.
        let stored: String = store
            .conn
            .query_row("SELECT hash FROM api_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, hash_key(&key));
        assert!(!stored.contains(&key[4..]));

        assert!(store.use_key("cyx-wrong").unwrap().is_none());
        assert_eq!(store.use_key(&key).unwrap().unwrap().name, "ci");
        let listed = store.list_keys().unwrap();
        assert_eq!(listed[0].request_count, 1);
        assert!(listed[0].last_used_at.is_some());

        store.revoke_key("ci").unwrap();
        assert!(store.use_key(&key).unwrap().is_none());
        assert!(matches!(store.revoke_key("ci"), Err(KeyError::NotFound(_))));
        // The name is free again once revoked.
        store.create_key("ci", &[], 0).unwrap();
        let kinds: Vec<String> = store
            .recent_audit(10)
            .unwrap()
            .into_iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(
            kinds,
            ["key_created", "key_revoked", "key_created"]
                .map(String::from)
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
        );
    }
}
