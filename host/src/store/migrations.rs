//! Schema migrations, applied in order; each runs in its own transaction and bumps
//! `PRAGMA user_version`. Append new scripts; never edit one that has shipped.
//!
//! Hand-written rather than `rusqlite_migration` (which keeps the same `user_version`
//! convention, so a later switch needs no data change): its newest release (2.6) requires
//! rusqlite 0.40, and the workspace is on 0.42; two rusqlite versions cannot both link SQLite.

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
    // 5: training jobs and their events. `config` is the job's validated config (JSON);
    // `metrics` the latest metrics (JSON object); `checkpoint` the latest checkpoint file.
    "CREATE TABLE jobs (
        id               TEXT PRIMARY KEY NOT NULL,
        origin           TEXT NOT NULL,
        state            TEXT NOT NULL,
        config           TEXT NOT NULL,
        backend          TEXT NOT NULL,
        dir              TEXT NOT NULL,
        attempt          INTEGER NOT NULL DEFAULT 0,
        epoch            INTEGER NOT NULL DEFAULT 0,
        total_epochs     INTEGER NOT NULL,
        step             INTEGER NOT NULL DEFAULT 0,
        total_steps      INTEGER NOT NULL DEFAULT 0,
        samples          INTEGER NOT NULL DEFAULT 0,
        metrics          TEXT NOT NULL DEFAULT '{}',
        checkpoint       TEXT,
        checkpoint_epoch INTEGER,
        checkpoint_step  INTEGER,
        weights_sha256   TEXT,
        weights_bytes    INTEGER,
        error            TEXT,
        run_seconds      REAL NOT NULL DEFAULT 0,
        created_at       TEXT NOT NULL,
        started_at       TEXT,
        finished_at      TEXT,
        updated_at       TEXT NOT NULL
    );
    CREATE INDEX jobs_state ON jobs (state, created_at);
    CREATE TABLE job_events (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        at     TEXT NOT NULL,
        kind   TEXT NOT NULL,
        state  TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX job_events_job ON job_events (job_id, id);",
    // 6: where a network job came from: the P2P reservation and the peer's address.
    "ALTER TABLE jobs ADD COLUMN reservation TEXT;
    ALTER TABLE jobs ADD COLUMN peer TEXT;",
    // 7: reports owed to the central server, written in the same transaction as the job
    // change that causes them. `lane` orders delivery (a job's id, or a reservation's for the
    // P2P reports); `payload` is the encoded request without its node id (filled when sent);
    // `once_key` makes a report that must exist once (a job's start and result, a
    // reservation's end) unique; `next_attempt_at` is Unix seconds; a row ends acknowledged
    // (`acked_at`) or refused for good (`failed_at`, with `last_error`).
    "CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        lane            TEXT NOT NULL,
        job_id          TEXT,
        kind            TEXT NOT NULL,
        once_key        TEXT UNIQUE,
        payload         BLOB NOT NULL,
        created_at      TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        acked_at        TEXT,
        failed_at       TEXT
    );
    CREATE INDEX outbox_pending ON outbox (lane, id) WHERE acked_at IS NULL AND failed_at IS NULL;",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{keys::Scope, Store};

    /// A database written by a node of schema version 3 (before key scopes): its key, audit
    /// log, node id and metric history survive the upgrade, and the key keeps exactly what
    /// it could do then (the inference API).
    #[test]
    fn a_version_3_database_upgrades_without_loss() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("node.db");
        {
            let conn = Connection::open(&path).expect("open");
            for script in &MIGRATIONS[..3] {
                conn.execute_batch(script).expect("an old migration");
            }
            conn.pragma_update(None, "user_version", 3)
                .expect("version 3");
            conn.execute_batch(
                "INSERT INTO node_meta (key, value) VALUES ('node_id', 'old-node');
                 INSERT INTO audit_log (at, kind, subject, detail)
                     VALUES ('2026-01-01T00:00:00Z', 'node_started', 'node', 'v3');
                 INSERT INTO api_keys (name, prefix, hash, models, rpm, created_at, request_count)
                     VALUES ('ci', 'cyx-0123', 'abc', 'embed', 30, '2026-01-01T00:00:00Z', 7);
                 INSERT INTO metric_samples (ts, resolution, cpu_percent, ram_used_bytes,
                     ram_total_bytes, net_rx_bps, net_tx_bps)
                     VALUES (1700000000, 5, 12.5, 1, 2, 3.0, 4.0);",
            )
            .expect("old rows");
        }
        let store = Store::open(&path).expect("the old database opens");
        assert_eq!(store.schema_version().expect("version"), LATEST);
        assert_eq!(store.node_id().expect("node id"), "old-node");
        let audit = store.recent_audit(10).expect("audit");
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].1, "node_started");
        let keys = store.list_keys().expect("keys");
        assert_eq!(keys.len(), 1);
        let key = &keys[0];
        assert_eq!(
            (key.name.as_str(), key.rpm, key.request_count),
            ("ci", 30, 7)
        );
        assert_eq!(key.models, ["embed"]);
        assert_eq!(key.scopes, [Scope::Inference]);
        let history = store.metric_history(0, i64::MAX, 10).expect("history");
        assert_eq!(history.len(), 1);
        drop(store);
        // Opening again is a no-op.
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.list_keys().expect("keys").len(), 1);
    }
}
