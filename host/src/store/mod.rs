//! The node's SQLite database (one file, `node.db` in the data directory): opening it,
//! migrating its schema forward, and the small queries the node needs so far.
//!
//! Migrations are numbered SQL scripts applied in order inside one transaction each;
//! `PRAGMA user_version` records how far a database has come. A database from a newer node
//! is refused rather than misread. Each thread that writes (the sampler) opens its own
//! connection: WAL and a 5 s busy timeout let them share the file.

pub mod keys;
pub mod metrics;
mod migrations;

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer node.
    #[error("database {path} has schema version {found}, this node knows up to {known}; upgrade the node")]
    TooNew {
        /// The database file.
        path: String,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
}

/// The open database.
pub struct Store {
    conn: Connection,
    path: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let wrap = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        let mut conn = Connection::open(path).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(wrap)?;
        migrations::apply(&mut conn, &shown)?;
        Ok(Self { conn, path: shown })
    }

    pub(crate) fn wrap(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.wrap(e))
    }

    /// The node's persistent id, created on first use.
    pub fn node_id(&self) -> Result<String, StoreError> {
        if let Some(id) = self.meta("node_id")? {
            return Ok(id);
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.conn
            .execute(
                "INSERT OR IGNORE INTO node_meta (key, value) VALUES ('node_id', ?1)",
                params![id],
            )
            .map_err(|e| self.wrap(e))?;
        // Another process may have won the race; read back what is stored.
        Ok(self.meta("node_id")?.unwrap_or(id))
    }

    /// Replaces the node id with the one the central server assigned.
    pub fn set_node_id(&self, id: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO node_meta (key, value) VALUES ('node_id', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![id],
            )
            .map_err(|e| self.wrap(e))?;
        Ok(())
    }

    /// A value from the key-value table.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT value FROM node_meta WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }

    /// Appends an audit event: `kind` is a stable label, `detail` free text.
    pub fn audit(&self, kind: &str, subject: &str, detail: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO audit_log (at, kind, subject, detail) VALUES (strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?1, ?2, ?3)",
                params![kind, subject, detail],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// The most recent audit events, newest first: `(at, kind, subject, detail)`.
    pub fn recent_audit(
        &self,
        limit: u32,
    ) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT at, kind, subject, detail FROM audit_log ORDER BY id DESC LIMIT ?1")
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.wrap(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_new_database_and_keeps_the_node_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let id = {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.schema_version().unwrap(), migrations::LATEST);
            store.audit("node_started", "node", "test").unwrap();
            store.node_id().unwrap()
        };
        let store = Store::open(&path).unwrap();
        assert_eq!(store.node_id().unwrap(), id, "the id survives a reopen");
        let events = store.recent_audit(10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1, "node_started");
    }

    #[test]
    fn refuses_a_database_from_a_newer_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 999).unwrap();
        }
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("999") && err.contains("upgrade"), "{err}");
    }
}
