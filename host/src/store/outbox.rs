//! The outbox: reports owed to the central server, kept in SQLite until it acknowledges
//! them. Rows are written in the same transaction as the job change that causes them (see
//! `set_job_state` and `record_epoch` in [`super::jobs`], and
//! [`Store::enqueue_reservation_end`]), so a report exists exactly when its change does; the
//! reporter (`crate::reports`) sends them oldest first per lane, retries with backoff, and
//! marks each acknowledged or refused for good. A row is never sent again after its
//! acknowledgement. Reports that must exist once (a job's start and result, a reservation's
//! end) carry a unique key, so a repeated change cannot queue a second one.
//!
//! A store opened in standalone mode (no central server) writes no rows
//! ([`Store::write_reports`]).

use rusqlite::{params, Transaction, TransactionBehavior};
use tokio::sync::Notify;

use super::reports::{self as plan, Kind, Planned};
use super::{Store, StoreError};

/// Signalled after a transaction wrote outbox rows (any store of this process), so the
/// reporter sends them at once instead of at its next poll.
pub static WRITTEN: Notify = Notify::const_new();

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

/// A report not yet acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Increasing id (the order reports were written in).
    pub id: i64,
    /// The delivery lane (a job's or a reservation's id).
    pub lane: String,
    /// The job it is about.
    pub job_id: Option<String>,
    /// What it is.
    pub kind: Kind,
    /// The encoded request, `node_id` empty.
    pub payload: Vec<u8>,
    /// Sends tried so far.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Counts for operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Reports waiting to be sent or retried.
    pub pending: u64,
    /// Reports acknowledged.
    pub acked: u64,
    /// Reports the central server refused for good.
    pub failed: u64,
}

/// Inserts `plans` inside `tx`; a report whose unique key exists already is skipped. Returns
/// how many rows were written.
pub(super) fn enqueue(tx: &Transaction<'_>, plans: &[Planned]) -> rusqlite::Result<usize> {
    let mut written = 0;
    for p in plans {
        written += tx.execute(
            &format!(
                "INSERT OR IGNORE INTO outbox (lane, job_id, kind, once_key, payload, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, {NOW})"
            ),
            params![p.lane, p.job_id, p.kind.as_str(), p.once_key, p.payload],
        )?;
    }
    Ok(written)
}

/// Wakes the reporter after a commit that wrote `written` rows.
pub(super) fn written(written: usize) {
    if written > 0 {
        WRITTEN.notify_one();
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Store {
    /// Whether job changes write reports (false in standalone mode: nobody would read them).
    pub fn write_reports(&mut self, on: bool) {
        self.reports = on;
    }

    /// Whether this store writes reports.
    pub fn writes_reports(&self) -> bool {
        self.reports
    }

    /// Queues `ReportReservationEndFromNode` for a P2P reservation (once per reservation;
    /// after the reservation's job reports, which share its lane). Returns whether a row was
    /// written (false when one exists or the store writes no reports).
    pub fn enqueue_reservation_end(
        &mut self,
        reservation_id: &str,
        jobs_completed: u32,
        total_compute_time: i64,
        node_available: bool,
    ) -> Result<bool, StoreError> {
        if !self.reports {
            return Ok(false);
        }
        let planned = plan::reservation_end(
            reservation_id,
            jobs_completed,
            total_compute_time,
            node_available,
        );
        let path = self.path.clone();
        let wrap = |e| StoreError::Sqlite {
            path: path.clone(),
            source: e,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(wrap)?;
        let n = enqueue(&tx, &[planned]).map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        written(n);
        Ok(n > 0)
    }

    /// Queues the FAILED result of central job `job_id`, accepted before it was queued, to be
    /// sent at `due_at` (Unix seconds) unless the job exists by then ([`Store::outbox_due`]
    /// drops it) or [`Store::settle_assignment`] settles it first. Returns whether a row was
    /// written (false in standalone mode or when one exists).
    pub fn enqueue_assignment(
        &mut self,
        job_id: &str,
        error: &str,
        due_at: i64,
    ) -> Result<bool, StoreError> {
        if !self.reports {
            return Ok(false);
        }
        let p = plan::assignment(job_id, error);
        let n = self
            .conn
            .execute(
                &format!(
                    "INSERT OR IGNORE INTO outbox
                       (lane, job_id, kind, once_key, payload, created_at, next_attempt_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, {NOW}, ?6)"
                ),
                params![
                    p.lane,
                    p.job_id,
                    p.kind.as_str(),
                    p.once_key,
                    p.payload,
                    due_at
                ],
            )
            .map_err(|e| self.wrap(e))?;
        Ok(n > 0)
    }

    /// Settles the pending FAILED result of an accepted central job: `None` (the job is
    /// queued) deletes it; `Some(error)` (the submission failed) makes it due now with
    /// that error.
    pub fn settle_assignment(&self, job_id: &str, failure: Option<&str>) -> Result<(), StoreError> {
        let key = format!("assigned:{job_id}");
        let changed = match failure {
            None => self.conn.execute(
                "DELETE FROM outbox WHERE once_key = ?1 AND acked_at IS NULL AND failed_at IS NULL",
                params![key],
            ),
            Some(error) => self.conn.execute(
                "UPDATE outbox SET payload = ?2, next_attempt_at = 0
                 WHERE once_key = ?1 AND acked_at IS NULL AND failed_at IS NULL",
                params![key, plan::assignment(job_id, error).payload],
            ),
        }
        .map_err(|e| self.wrap(e))?;
        if failure.is_some() {
            written(changed);
        }
        Ok(())
    }

    /// The reports to send now, oldest first: of each lane only its oldest pending report,
    /// and only when its retry time (Unix seconds) is not after `now`. A pending
    /// assignment's FAILED result whose job exists after all is dropped first.
    pub fn outbox_due(&self, now: i64, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        self.conn
            .execute(
                "DELETE FROM outbox WHERE kind = 'assigned' AND acked_at IS NULL
                   AND failed_at IS NULL AND job_id IN (SELECT id FROM jobs)",
                [],
            )
            .map_err(|e| self.wrap(e))?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, lane, job_id, kind, payload, attempts, last_error FROM outbox o
                 WHERE acked_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?1
                   AND id = (SELECT MIN(id) FROM outbox p
                             WHERE p.lane = o.lane AND p.acked_at IS NULL AND p.failed_at IS NULL)
                 ORDER BY id LIMIT ?2",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![now, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, u32>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(|e| self.wrap(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, lane, job_id, kind, payload, attempts, last_error) =
                row.map_err(|e| self.wrap(e))?;
            match Kind::parse(&kind) {
                Some(kind) => out.push(OutboxRow {
                    id,
                    lane,
                    job_id,
                    kind,
                    payload,
                    attempts,
                    last_error,
                }),
                // Written by a newer node: refuse it for good rather than block its lane.
                None => self.outbox_fail(id, &format!("unknown report kind {kind:?}"))?,
            }
        }
        Ok(out)
    }

    /// Marks a report acknowledged: it is never sent again.
    pub fn outbox_ack(&self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "UPDATE outbox SET acked_at = {NOW}, attempts = attempts + 1
                     WHERE id = ?1 AND acked_at IS NULL"
                ),
                params![id],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Records a failed send and when to try again (Unix seconds).
    pub fn outbox_retry(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
                 WHERE id = ?1 AND acked_at IS NULL",
                params![id, error, next_attempt_at],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Marks a report refused for good (the server will never take it): kept with its error,
    /// never retried.
    pub fn outbox_fail(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "UPDATE outbox SET failed_at = {NOW}, attempts = attempts + 1, last_error = ?2
                     WHERE id = ?1 AND acked_at IS NULL"
                ),
                params![id, error],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Makes every pending report due now (after the central server came back), except an
    /// accepted job's stand-in result, which waits for its submission.
    pub fn outbox_hurry(&self) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET next_attempt_at = 0
                 WHERE acked_at IS NULL AND failed_at IS NULL AND next_attempt_at > 0
                   AND kind != 'assigned'",
                [],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// The earliest retry time (Unix seconds) of a lane's oldest pending report, if any.
    pub fn outbox_next_due(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(next_attempt_at) FROM outbox o
                 WHERE acked_at IS NULL AND failed_at IS NULL
                   AND id = (SELECT MIN(id) FROM outbox p
                             WHERE p.lane = o.lane AND p.acked_at IS NULL AND p.failed_at IS NULL)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.wrap(e))
    }

    /// Reports waiting to be sent (or retried).
    pub fn outbox_backlog(&self) -> Result<u64, StoreError> {
        Ok(self.outbox_counts()?.pending)
    }

    /// Pending, acknowledged and refused reports.
    pub fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(acked_at IS NULL AND failed_at IS NULL), 0),
                        COALESCE(SUM(acked_at IS NOT NULL), 0),
                        COALESCE(SUM(failed_at IS NOT NULL), 0) FROM outbox",
                [],
                |r| {
                    Ok(OutboxCounts {
                        pending: r.get::<_, i64>(0)? as u64,
                        acked: r.get::<_, i64>(1)? as u64,
                        failed: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .map_err(|e| self.wrap(e))
    }

    /// Every report of a lane, oldest first: (kind, attempts, acknowledged, refused).
    pub fn outbox_lane(&self, lane: &str) -> Result<Vec<(Kind, u32, bool, bool)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT kind, attempts, acked_at IS NOT NULL, failed_at IS NOT NULL
                 FROM outbox WHERE lane = ?1 ORDER BY id",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![lane], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })
            .map_err(|e| self.wrap(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, attempts, acked, failed) = row.map_err(|e| self.wrap(e))?;
            if let Some(kind) = Kind::parse(&kind) {
                out.push((kind, attempts, acked, failed));
            }
        }
        Ok(out)
    }
}

/// Unix seconds now (the outbox's clock).
pub fn now() -> i64 {
    unix_now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::jobs::{JobProgress, NewJob};
    use prost::Message;

    const JOB: &str = "0b6c5c1e-0000-4000-8000-000000000007";

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        (dir, store)
    }

    fn insert(store: &mut Store, id: &str, origin: &str, reservation: Option<&str>) {
        store
            .insert_job(&NewJob {
                id,
                origin,
                config: "{}",
                backend: "train-candle",
                dir: "/tmp/j",
                total_epochs: 2,
                reservation,
                peer: Some("127.0.0.1:1"),
            })
            .unwrap();
    }

    fn run_to_end(store: &mut Store, id: &str, end: &str) {
        for state in ["preparing", "running"] {
            store.set_job_state(id, state, state, None).unwrap();
        }
        for epoch in 1..=2 {
            let p = JobProgress {
                epoch,
                metrics: r#"{"loss":0.5}"#.into(),
                ..Default::default()
            };
            store.record_epoch(id, &p, "epoch done").unwrap();
        }
        store.set_job_state(id, "paused", "p", None).unwrap();
        store.set_job_state(id, "running", "r", None).unwrap();
        store.set_job_state(id, end, end, Some("why")).unwrap();
    }

    #[test]
    fn a_central_job_queues_its_reports_with_its_changes_and_once_each() {
        let (_dir, mut store) = store();
        insert(&mut store, JOB, "central", None);
        run_to_end(&mut store, JOB, "succeeded");
        // Repeating the end (a second terminal write) queues no second result.
        store.set_job_state(JOB, "failed", "again", None).unwrap();
        let lane: Vec<Kind> = store
            .outbox_lane(JOB)
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(
            lane,
            [Kind::Started, Kind::Epoch, Kind::Epoch, Kind::Result]
        );
        // The epoch's progress and event went in with it.
        let row = store.job(JOB).unwrap().unwrap();
        assert_eq!(row.epoch, 2);
        let epochs = store
            .job_events(JOB, 0, 100)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "epoch")
            .count();
        assert_eq!(epochs, 2);
        assert_eq!(store.outbox_backlog().unwrap(), 4);
    }

    #[test]
    fn lanes_deliver_in_order_and_acks_retries_and_refusals_stick() {
        let (_dir, mut store) = store();
        insert(&mut store, JOB, "central", None);
        let other = "0b6c5c1e-0000-4000-8000-000000000008";
        insert(&mut store, other, "central", None);
        store.set_job_state(JOB, "preparing", "", None).unwrap();
        store.set_job_state(JOB, "running", "", None).unwrap();
        store
            .set_job_state(other, "failed", "", Some("bad"))
            .unwrap();
        store
            .set_job_state(JOB, "failed", "", Some("boom"))
            .unwrap();
        // One row per lane at a time, oldest first.
        let due = store.outbox_due(0, 10).unwrap();
        let heads: Vec<(&str, Kind)> = due.iter().map(|r| (r.lane.as_str(), r.kind)).collect();
        assert_eq!(heads, [(JOB, Kind::Started), (other, Kind::Result)]);
        // A retry in the future holds its lane back (the result must not overtake it).
        store.outbox_retry(due[0].id, "unavailable", 100).unwrap();
        let due2 = store.outbox_due(50, 10).unwrap();
        assert_eq!(due2.len(), 1);
        assert_eq!(due2[0].lane, other);
        assert_eq!(store.outbox_next_due().unwrap(), Some(0));
        store.outbox_fail(due2[0].id, "NOT_FOUND: job").unwrap();
        assert_eq!(store.outbox_next_due().unwrap(), Some(100));
        let due3 = store.outbox_due(100, 10).unwrap();
        assert_eq!((due3[0].kind, due3[0].attempts), (Kind::Started, 1));
        assert_eq!(due3[0].last_error.as_deref(), Some("unavailable"));
        store.outbox_ack(due3[0].id).unwrap();
        let due4 = store.outbox_due(100, 10).unwrap();
        assert_eq!(due4[0].kind, Kind::Result);
        store.outbox_ack(due4[0].id).unwrap();
        // Acknowledged and refused rows never come back; a late ack or fail changes nothing.
        assert!(store.outbox_due(i64::MAX, 10).unwrap().is_empty());
        store.outbox_fail(due4[0].id, "late").unwrap();
        store.outbox_retry(due4[0].id, "late", 0).unwrap();
        assert!(store.outbox_due(i64::MAX, 10).unwrap().is_empty());
        assert_eq!(
            store.outbox_counts().unwrap(),
            OutboxCounts {
                pending: 0,
                acked: 2,
                failed: 1
            }
        );
        // Hurry makes backed-off rows due at once.
        insert(
            &mut store,
            "0b6c5c1e-0000-4000-8000-000000000009",
            "central",
            None,
        );
        store
            .set_job_state("0b6c5c1e-0000-4000-8000-000000000009", "failed", "", None)
            .unwrap();
        let due5 = store.outbox_due(0, 10).unwrap();
        store.outbox_retry(due5[0].id, "down", 1_000).unwrap();
        assert!(store.outbox_due(10, 10).unwrap().is_empty());
        store.outbox_hurry().unwrap();
        assert_eq!(store.outbox_due(10, 10).unwrap().len(), 1);
    }

    /// Job changes read before they write; another connection writing at the same time (the
    /// audit writer, the reporter) must make them wait, not fail.
    #[test]
    fn job_changes_wait_for_other_writers_instead_of_failing() {
        let (dir, mut store) = store();
        let path = dir.path().join("node.db");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let other = Store::open(&path).unwrap();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    other.audit("noise", "test", "concurrent writer").unwrap();
                    n += 1;
                }
                n
            })
        };
        for i in 0..150 {
            let id = format!("0b6c5c1e-0000-4000-8000-{i:012}");
            insert(&mut store, &id, "central", None);
            for state in ["preparing", "running"] {
                store.set_job_state(&id, state, state, None).unwrap();
            }
            let p = JobProgress {
                epoch: 1,
                ..Default::default()
            };
            store.record_epoch(&id, &p, "epoch 1 done").unwrap();
            store.set_job_state(&id, "succeeded", "done", None).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);
        assert_eq!(store.outbox_backlog().unwrap(), 150 * 3);
    }

    #[test]
    fn an_assignment_accepted_early_reports_failed_only_if_its_job_never_appears() {
        let (_dir, mut store) = store();
        // Queued in time: settled, nothing to send, and the job's own reports follow.
        assert!(store
            .enqueue_assignment(JOB, "node stopped", 1_000)
            .unwrap());
        assert!(
            !store.enqueue_assignment(JOB, "again", 1_000).unwrap(),
            "once"
        );
        insert(&mut store, JOB, "central", None);
        store.settle_assignment(JOB, None).unwrap();
        store
            .set_job_state(JOB, "failed", "", Some("boom"))
            .unwrap();
        let lane: Vec<Kind> = store
            .outbox_lane(JOB)
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(lane, [Kind::Result]);

        // The submission failed: the FAILED result is due at once, with the reason.
        let refused = "0b6c5c1e-0000-4000-8000-0000000000a1";
        store
            .enqueue_assignment(refused, "node stopped", 1_000)
            .unwrap();
        // Not due before its time, even when the server comes back.
        store.outbox_hurry().unwrap();
        assert!(store
            .outbox_due(10, 10)
            .unwrap()
            .iter()
            .all(|r| r.lane != refused));
        store
            .settle_assignment(refused, Some("dataset: no such file"))
            .unwrap();
        let due = store.outbox_due(10, 10).unwrap();
        let row = due.iter().find(|r| r.lane == refused).unwrap();
        assert_eq!(row.kind, Kind::Assigned);
        let r =
            cyxwiz_proto::protocol::ReportJobResultRequest::decode(row.payload.as_slice()).unwrap();
        assert_eq!(
            (r.final_status, r.error_message.as_str()),
            (6, "dataset: no such file")
        );

        // The node died after queueing the job but before settling: once the row is due, the
        // job's existence drops it.
        let late = "0b6c5c1e-0000-4000-8000-0000000000a2";
        store.enqueue_assignment(late, "node stopped", 50).unwrap();
        insert(&mut store, late, "central", None);
        assert!(store
            .outbox_due(100, 10)
            .unwrap()
            .iter()
            .all(|r| r.lane != late));
        assert!(store.outbox_lane(late).unwrap().is_empty());
        // And one whose job never appeared is sent when due.
        let lost = "0b6c5c1e-0000-4000-8000-0000000000a3";
        store
            .enqueue_assignment(lost, "the node stopped before the job was queued", 50)
            .unwrap();
        assert!(store
            .outbox_due(100, 10)
            .unwrap()
            .iter()
            .any(|r| r.lane == lost));
    }

    #[test]
    fn p2p_reports_share_the_reservation_lane_and_local_or_standalone_write_nothing() {
        let (_dir, mut store) = store();
        let reservation = "5d7c0a4e-1111-4000-8000-000000000000";
        insert(&mut store, JOB, "p2p", Some(reservation));
        run_to_end(&mut store, JOB, "succeeded");
        assert!(store
            .enqueue_reservation_end(reservation, 1, 30, true)
            .unwrap());
        assert!(
            !store
                .enqueue_reservation_end(reservation, 1, 30, true)
                .unwrap(),
            "once per reservation"
        );
        let lane: Vec<Kind> = store
            .outbox_lane(reservation)
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(lane, [Kind::Complete, Kind::ReservationEnd]);

        let local = "0b6c5c1e-0000-4000-8000-00000000000a";
        insert(&mut store, local, "local", None);
        run_to_end(&mut store, local, "succeeded");
        assert!(store.outbox_lane(local).unwrap().is_empty());

        let standalone = "0b6c5c1e-0000-4000-8000-00000000000b";
        store.write_reports(false);
        insert(&mut store, standalone, "central", None);
        run_to_end(&mut store, standalone, "failed");
        assert!(store.outbox_lane(standalone).unwrap().is_empty());
        assert!(!store
            .enqueue_reservation_end("another", 0, 0, true)
            .unwrap());
        assert_eq!(store.job(standalone).unwrap().unwrap().state, "failed");
    }
}
