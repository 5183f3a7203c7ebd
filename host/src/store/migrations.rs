//! Schema migrations, applied in order; each runs in its own transaction and bumps
//! `PRAGMA user_version`. Append new scripts; never edit one that has shipped.

use super::StoreError;
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: node identity and the audit log.
    "CREATE TABLE node_meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );
    CREATE TABLE audit_log (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      TEXT NOT NULL,
        kind    TEXT NOT NULL,
        subject TEXT NOT NULL,
        detail  TEXT NOT NULL
    );
    CREATE INDEX audit_log_kind ON audit_log (kind, at);",
];

/// The schema version this build writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Brings the database at `path` (already open as `conn`) up to [`LATEST`].
pub(super) fn apply(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let wrap = |source| StoreError::Sqlite {
        path: path.to_string(),
        source,
    };
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(wrap)?;
    if current > LATEST {
        return Err(StoreError::TooNew {
            path: path.to_string(),
            found: current,
            known: LATEST,
        });
    }
    for (index, script) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let tx = conn.transaction().map_err(wrap)?;
        tx.execute_batch(script).map_err(wrap)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
    }
    Ok(())
}
