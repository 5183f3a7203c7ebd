//! The node's SQLite database (one file, `node.db` in the data directory): opening it,
//! migrating its schema forward, and the small queries the node needs so far.
//!
//! Migrations are numbered SQL scripts applied in order inside one transaction each;
//! `PRAGMA user_version` records how far a database has come. A database from a newer node
//! is refused rather than misread. Each thread that writes (the sampler) opens its own
//! connection: WAL and a 5 s busy timeout let them share the file. The file and its `-wal` and
//! `-shm` companions are private to the node's user (0600): they hold key hashes and the audit
//! log.

pub mod jobs;
pub mod keys;
pub mod metrics;
mod migrations;
pub mod outbox;
pub mod reports;

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
    /// The database file could not be created or made private.
    #[error("database {path}: {source}")]
    Io {
        /// The database file.
        path: String,
        /// Why.
        source: std::io::Error,
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
    /// Job changes write reports to the central server (`outbox`); off in standalone mode.
    reports: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Creates the database file 0600 before SQLite does (SQLite would make it 0644, and makes
/// its `-wal` and `-shm` files with the database's mode), and tightens an existing database
/// and companions that others could read.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = std::path::PathBuf::from(file);
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            // Another user's file (a shared setup) stays as it is: warn, still open it.
            if let Err(e) =
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & !0o077))
            {
                tracing::warn!(file = %file.display(), error = %e, "cannot make the database private (mode {mode:04o}); other users may read it");
            }
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed, private to this user) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let wrap = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        make_private(path).map_err(|source| StoreError::Io {
            path: shown.clone(),
            source,
        })?;
        let mut conn = Connection::open(path).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(wrap)?;
        migrations::apply(&mut conn, &shown)?;
        Ok(Self {
            conn,
            path: shown,
            reports: true,
        })
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

    /// Deletes audit events older than `days` days (0: none by age) and all but the newest
    /// `max_events` (0: no cap). Returns how many were deleted.
    pub fn prune_audit(&self, days: u64, max_events: u64) -> Result<usize, StoreError> {
        let mut deleted = 0;
        if days > 0 {
            deleted += self
                .conn
                .execute(
                    "DELETE FROM audit_log WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)",
                    params![format!("-{days} days")],
                )
                .map_err(|e| self.wrap(e))?;
        }
        if max_events > 0 {
            deleted += self
                .conn
                .execute(
                    "DELETE FROM audit_log WHERE id <= (SELECT id FROM audit_log ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                    params![i64::try_from(max_events).unwrap_or(i64::MAX)],
                )
                .map_err(|e| self.wrap(e))?;
        }
        Ok(deleted)
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

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_database_and_its_wal_are_private_to_the_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let store = Store::open(&path).unwrap();
        store.audit("node_started", "node", "test").unwrap();
        let second = Store::open(&path).unwrap();
        second.node_id().unwrap();
        assert_eq!(mode(&path), 0o600, "node.db");
        for companion in ["node.db-wal", "node.db-shm"] {
            let file = dir.path().join(companion);
            assert!(
                file.exists(),
                "{companion} exists while the database is open"
            );
            assert_eq!(mode(&file), 0o600, "{companion}");
        }
        drop((store, second));

        // A database left world-readable by an older node is tightened when opened.
        let old = dir.path().join("old.db");
        drop(Connection::open(&old).unwrap());
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        let wal = dir.path().join("old.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o664)).unwrap();
        let _open = Store::open(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
        assert_eq!(mode(&wal), 0o600);
    }
}
