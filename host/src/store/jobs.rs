//! Training jobs in SQLite: one row per job (config, state, progress, checkpoint, weights,
//! error) and its event history. Every state change is one transaction that updates the row
//! and appends the event, so the database says what happened before anyone is told.

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::reports as plan;
use super::{outbox, Store, StoreError};

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

/// A job row.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// The job id (a UUID).
    pub id: String,
    /// `local` or `network`.
    pub origin: String,
    /// The state's name.
    pub state: String,
    /// The validated config as JSON.
    pub config: String,
    /// The training plugin.
    pub backend: String,
    /// The job's directory.
    pub dir: String,
    /// How many times it started (1 on the first run; more after resumes).
    pub attempt: u32,
    /// Epochs completed.
    pub epoch: u32,
    /// Epochs in all.
    pub total_epochs: u32,
    /// Batches done in the current epoch.
    pub step: u64,
    /// Batches per epoch (0 until known).
    pub total_steps: u64,
    /// Training samples processed.
    pub samples: u64,
    /// The latest metrics (JSON object).
    pub metrics: String,
    /// The latest checkpoint file.
    pub checkpoint: Option<String>,
    /// Epochs completed at that checkpoint.
    pub checkpoint_epoch: Option<u32>,
    /// Steps completed at that checkpoint.
    pub checkpoint_step: Option<u64>,
    /// sha256 of `weights.safetensors`.
    pub weights_sha256: Option<String>,
    /// Its size.
    pub weights_bytes: Option<u64>,
    /// Why it failed or how it was cancelled.
    pub error: Option<String>,
    /// Seconds spent training over all attempts.
    pub run_seconds: f64,
    /// When it was submitted (RFC 3339).
    pub created_at: String,
    /// When it first started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// When the row last changed.
    pub updated_at: String,
    /// The P2P reservation the job belongs to.
    pub reservation: Option<String>,
    /// The address of the peer that sent it (the Engine or the central server).
    pub peer: Option<String>,
}

/// One event of a job's history.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEventRow {
    /// Increasing id (resume a listing after it).
    pub id: i64,
    /// When.
    pub at: String,
    /// `state`, `checkpoint`, `epoch`, `error`.
    pub kind: String,
    /// The job's state after the event.
    pub state: String,
    /// Free text.
    pub detail: String,
}

/// What a new job row holds.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// The id.
    pub id: &'a str,
    /// `local` or `network`.
    pub origin: &'a str,
    /// The config JSON.
    pub config: &'a str,
    /// The plugin.
    pub backend: &'a str,
    /// The directory.
    pub dir: &'a str,
    /// Epochs in all.
    pub total_epochs: u32,
    /// The P2P reservation, for `p2p` jobs.
    pub reservation: Option<&'a str>,
    /// The sender's address, for network jobs.
    pub peer: Option<&'a str>,
}

/// Progress written while a job runs.
#[derive(Debug, Clone, Default)]
pub struct JobProgress {
    /// Epochs completed.
    pub epoch: u32,
    /// Batches done in the current epoch.
    pub step: u64,
    /// Batches per epoch.
    pub total_steps: u64,
    /// Samples processed.
    pub samples: u64,
    /// Metrics (JSON object).
    pub metrics: String,
    /// Seconds trained in all.
    pub run_seconds: f64,
}

const COLUMNS: &str =
    "id, origin, state, config, backend, dir, attempt, epoch, total_epochs, step, \
    total_steps, samples, metrics, checkpoint, checkpoint_epoch, checkpoint_step, weights_sha256, \
    weights_bytes, error, run_seconds, created_at, started_at, finished_at, updated_at, \
    reservation, peer";

fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        origin: r.get(1)?,
        state: r.get(2)?,
        config: r.get(3)?,
        backend: r.get(4)?,
        dir: r.get(5)?,
        attempt: r.get(6)?,
        epoch: r.get(7)?,
        total_epochs: r.get(8)?,
        step: r.get::<_, i64>(9)? as u64,
        total_steps: r.get::<_, i64>(10)? as u64,
        samples: r.get::<_, i64>(11)? as u64,
        metrics: r.get(12)?,
        checkpoint: r.get(13)?,
        checkpoint_epoch: r.get(14)?,
        checkpoint_step: r.get::<_, Option<i64>>(15)?.map(|v| v as u64),
        weights_sha256: r.get(16)?,
        weights_bytes: r.get::<_, Option<i64>>(17)?.map(|v| v as u64),
        error: r.get(18)?,
        run_seconds: r.get(19)?,
        created_at: r.get(20)?,
        started_at: r.get(21)?,
        finished_at: r.get(22)?,
        updated_at: r.get(23)?,
        reservation: r.get(24)?,
        peer: r.get(25)?,
    })
}

impl Store {
    /// A transaction that takes the write lock at once, and the database's path for errors.
    /// IMMEDIATE because job changes read before they write: a deferred transaction whose
    /// snapshot another connection (the audit writer, the reporter) overtook could not upgrade.
    fn immediate(&mut self) -> Result<(rusqlite::Transaction<'_>, String), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| wrap_path(&path, e))?;
        Ok((tx, path))
    }

    /// Inserts a queued job and its first event.
    pub fn insert_job(&mut self, job: &NewJob<'_>) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| wrap_path(&path, e))?;
        tx.execute(
            &format!(
                "INSERT INTO jobs (id, origin, state, config, backend, dir, total_epochs, created_at, updated_at, reservation, peer)
                 VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, {NOW}, {NOW}, ?7, ?8)"
            ),
            params![job.id, job.origin, job.config, job.backend, job.dir, job.total_epochs, job.reservation, job.peer],
        )
        .map_err(|e| wrap_path(&path, e))?;
        tx.execute(
            &format!(
                "INSERT INTO job_events (job_id, at, kind, state, detail) VALUES (?1, {NOW}, 'state', 'queued', 'submitted')"
            ),
            params![job.id],
        )
        .map_err(|e| wrap_path(&path, e))?;
        tx.commit().map_err(|e| wrap_path(&path, e))
    }

    /// Moves a job to `state` and records the event, in one transaction. `error` replaces
    /// the job's error when given; a terminal state sets `finished_at`, `running` sets
    /// `started_at` once and `preparing` counts an attempt. The reports the change owes the
    /// central server (`super::reports::for_state`) go into the outbox in the same
    /// transaction.
    pub fn set_job_state(
        &mut self,
        id: &str,
        state: &str,
        detail: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let reports = self.reports;
        let (tx, path) = self.immediate()?;
        let terminal = matches!(state, "succeeded" | "failed" | "cancelled");
        // Whether the job had been running before (None: no such job).
        let had_run: Option<bool> = tx
            .query_row(
                "SELECT started_at IS NOT NULL FROM jobs WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| wrap_path(&path, e))?;
        tx.execute(
            &format!(
                "UPDATE jobs SET state = ?2, error = COALESCE(?3, error), updated_at = {NOW},
                   finished_at = CASE WHEN ?4 THEN {NOW} ELSE finished_at END,
                   started_at = CASE WHEN ?2 = 'running' AND started_at IS NULL THEN {NOW} ELSE started_at END,
                   attempt = attempt + CASE WHEN ?2 = 'preparing' THEN 1 ELSE 0 END
                 WHERE id = ?1"
            ),
            params![id, state, error, terminal],
        )
        .map_err(|e| wrap_path(&path, e))?;
        tx.execute(
            &format!(
                "INSERT INTO job_events (job_id, at, kind, state, detail) VALUES (?1, {NOW}, 'state', ?2, ?3)"
            ),
            params![id, state, detail],
        )
        .map_err(|e| wrap_path(&path, e))?;
        let mut written = 0;
        if let (true, Some(had_run)) = (reports, had_run) {
            let row = tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                    params![id],
                    job_row,
                )
                .map_err(|e| wrap_path(&path, e))?;
            let plans = plan::for_state(&row, state, !had_run, outbox::now());
            written = outbox::enqueue(&tx, &plans).map_err(|e| wrap_path(&path, e))?;
        }
        tx.commit().map_err(|e| wrap_path(&path, e))?;
        outbox::written(written);
        Ok(())
    }

    /// Records the end of an epoch: the job's progress, its `epoch` event and the report it
    /// owes the central server (`super::reports::for_epoch`), in one transaction.
    pub fn record_epoch(
        &mut self,
        id: &str,
        p: &JobProgress,
        detail: &str,
    ) -> Result<(), StoreError> {
        let reports = self.reports;
        let (tx, path) = self.immediate()?;
        write_progress(&tx, id, p).map_err(|e| wrap_path(&path, e))?;
        tx.execute(
            &format!(
                "INSERT INTO job_events (job_id, at, kind, state, detail)
                 SELECT id, {NOW}, 'epoch', state, ?2 FROM jobs WHERE id = ?1"
            ),
            params![id, detail],
        )
        .map_err(|e| wrap_path(&path, e))?;
        let mut written = 0;
        if reports {
            let row = tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                    params![id],
                    job_row,
                )
                .optional()
                .map_err(|e| wrap_path(&path, e))?;
            if let Some(row) = row {
                let plans = plan::for_epoch(&row, p);
                written = outbox::enqueue(&tx, &plans).map_err(|e| wrap_path(&path, e))?;
            }
        }
        tx.commit().map_err(|e| wrap_path(&path, e))?;
        outbox::written(written);
        Ok(())
    }

    /// Appends a non-state event (`checkpoint`, `epoch`, `log`).
    pub fn job_event(&self, id: &str, kind: &str, detail: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO job_events (job_id, at, kind, state, detail)
                     SELECT id, {NOW}, ?2, state, ?3 FROM jobs WHERE id = ?1"
                ),
                params![id, kind, detail],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Writes a running job's progress.
    pub fn set_job_progress(&self, id: &str, p: &JobProgress) -> Result<(), StoreError> {
        write_progress(&self.conn, id, p)
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Records a durable checkpoint (the file is already renamed into place) and its event.
    pub fn set_job_checkpoint(
        &mut self,
        id: &str,
        path: &str,
        epoch: u32,
        step: u64,
        detail: &str,
    ) -> Result<(), StoreError> {
        let p = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| wrap_path(&p, e))?;
        tx.execute(
            &format!(
                "UPDATE jobs SET checkpoint = ?2, checkpoint_epoch = ?3, checkpoint_step = ?4, updated_at = {NOW} WHERE id = ?1"
            ),
            params![id, path, epoch, step as i64],
        )
        .map_err(|e| wrap_path(&p, e))?;
        tx.execute(
            &format!(
                "INSERT INTO job_events (job_id, at, kind, state, detail)
                 SELECT id, {NOW}, 'checkpoint', state, ?2 FROM jobs WHERE id = ?1"
            ),
            params![id, detail],
        )
        .map_err(|e| wrap_path(&p, e))?;
        tx.commit().map_err(|e| wrap_path(&p, e))
    }

    /// Records the job's weights file.
    pub fn set_job_weights(&self, id: &str, sha256: &str, bytes: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "UPDATE jobs SET weights_sha256 = ?2, weights_bytes = ?3, updated_at = {NOW} WHERE id = ?1"
                ),
                params![id, sha256, bytes as i64],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// One job.
    pub fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_row,
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }

    /// Jobs, newest first; `state` filters by state name.
    pub fn jobs(&self, state: Option<&str>, limit: u32) -> Result<Vec<JobRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1)
                 ORDER BY created_at DESC, rowid DESC LIMIT ?2"
            ))
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![state, limit], job_row)
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Jobs not in an end state, oldest first (what a starting node must take over).
    pub fn unfinished_jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE state NOT IN ('succeeded', 'failed', 'cancelled')
                 ORDER BY created_at, rowid"
            ))
            .map_err(|e| self.wrap(e))?;
        let rows = stmt.query_map([], job_row).map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Counts jobs per state name.
    pub fn job_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state")
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Replaces a job's validated config (a retuned job).
    pub fn set_job_config(&self, id: &str, config: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!("UPDATE jobs SET config = ?2, updated_at = {NOW} WHERE id = ?1"),
                params![id, config],
            )
            .map_err(|e| self.wrap(e))?;
        Ok(())
    }

    /// How many jobs came from each origin.
    pub fn job_origin_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT origin, COUNT(*) FROM jobs GROUP BY origin ORDER BY origin")
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// A job's events after `after_id`, oldest first.
    pub fn job_events(
        &self,
        id: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<JobEventRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, at, kind, state, detail FROM job_events WHERE job_id = ?1 AND id > ?2
                 ORDER BY id LIMIT ?3",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![id, after_id, limit], |r| {
                Ok(JobEventRow {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    state: r.get(3)?,
                    detail: r.get(4)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }
}

fn write_progress(conn: &Connection, id: &str, p: &JobProgress) -> rusqlite::Result<usize> {
    conn.execute(
        &format!(
            "UPDATE jobs SET epoch = ?2, step = ?3, total_steps = ?4, samples = ?5, metrics = ?6,
               run_seconds = ?7, updated_at = {NOW} WHERE id = ?1"
        ),
        params![
            id,
            p.epoch,
            p.step as i64,
            p.total_steps as i64,
            p.samples as i64,
            p.metrics,
            p.run_seconds
        ],
    )
}

fn wrap_path(path: &str, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_moves_through_states_with_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("node.db")).unwrap();
        let job = NewJob {
            id: "0b6c5c1e-0000-4000-8000-000000000001",
            origin: "local",
            config: "{}",
            backend: "train-candle",
            dir: "/tmp/j",
            total_epochs: 3,
            reservation: None,
            peer: None,
        };
        store.insert_job(&job).unwrap();
        assert!(store.insert_job(&job).is_err(), "ids are unique");
        store
            .set_job_state(job.id, "preparing", "started", None)
            .unwrap();
        store
            .set_job_state(job.id, "running", "training", None)
            .unwrap();
        store
            .set_job_checkpoint(job.id, "/tmp/j/c1", 1, 10, "epoch 1")
            .unwrap();
        store
            .set_job_progress(
                job.id,
                &JobProgress {
                    epoch: 1,
                    step: 2,
                    total_steps: 10,
                    samples: 12,
                    metrics: r#"{"loss":0.5}"#.into(),
                    run_seconds: 1.5,
                },
            )
            .unwrap();
        store
            .set_job_state(job.id, "failed", "boom", Some("it broke"))
            .unwrap();
        let row = store.job(job.id).unwrap().unwrap();
        assert_eq!(
            (row.state.as_str(), row.attempt, row.epoch),
            ("failed", 1, 1)
        );
        assert_eq!(row.checkpoint.as_deref(), Some("/tmp/j/c1"));
        assert_eq!(row.error.as_deref(), Some("it broke"));
        assert!(row.started_at.is_some() && row.finished_at.is_some());
        let events = store.job_events(job.id, 0, 100).unwrap();
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.kind.as_str(), e.state.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("state", "queued"),
                ("state", "preparing"),
                ("state", "running"),
                ("checkpoint", "running"),
                ("state", "failed")
            ]
        );
        assert!(store.unfinished_jobs().unwrap().is_empty());
        assert_eq!(store.jobs(Some("failed"), 10).unwrap().len(), 1);
        assert_eq!(store.job_counts().unwrap(), [("failed".to_string(), 1)]);
    }
}
