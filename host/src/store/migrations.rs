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
    // 2: API keys, stored as SHA-256 hashes; names are unique among keys not revoked.
    "CREATE TABLE api_keys (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        name          TEXT NOT NULL,
        prefix        TEXT NOT NULL,
        hash          TEXT NOT NULL UNIQUE,
        models        TEXT NOT NULL DEFAULT '',
        rpm           INTEGER NOT NULL DEFAULT 0,
        created_at    TEXT NOT NULL,
        last_used_at  TEXT,
        request_count INTEGER NOT NULL DEFAULT 0,
        revoked_at    TEXT
    );
    CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;",
    // 3: sampled system metrics; `resolution` is the seconds a point covers (the sample
    // interval, then 60 or 600 once downsampled). GPU columns are NULL without GPUs.
    "CREATE TABLE metric_samples (
        ts                    INTEGER NOT NULL,
        resolution            INTEGER NOT NULL,
        cpu_percent           REAL NOT NULL,
        ram_used_bytes        INTEGER NOT NULL,
        ram_total_bytes       INTEGER NOT NULL,
        net_rx_bps            REAL NOT NULL,
        net_tx_bps            REAL NOT NULL,
        gpu_percent           REAL,
        gpu_memory_used_bytes INTEGER,
        gpu_power_watts       REAL
    );
    CREATE INDEX metric_samples_ts ON metric_samples (ts);",
    // 4: what a key may do (comma-separated scopes); keys made before scopes existed could
    // only call the inference API, so they keep exactly that.
    "ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'inference';
    CREATE INDEX audit_log_at ON audit_log (at);",
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
