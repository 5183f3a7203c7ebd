//! The job executor: accepts jobs (validating graph and dataset before anything is queued),
//! keeps the queue, runs at most `[node] max_concurrent_jobs` jobs on their own threads
//! (never on the async runtime), obeys pause/resume/cancel, takes over unfinished jobs after
//! a restart, and stops cleanly with the node. Every state change is written to SQLite before
//! subscribers hear of it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::plugins::Trainer;
use cyxwiz_sdk::training::{DatasetShape, ModelSpec, TrainingJob};
use tokio::sync::broadcast;

use super::dataset::{self, DatasetSource, SourceConfig};
use super::dir::{write_atomic, JobDir};
use super::error::JobError;
use super::graph::parse_model_definition;
use super::remote::RemoteData;
use super::request::{DatasetRef, JobConfig, JobRequest, Origin};
use super::session::{weights_from_checkpoint, Control, Data, Retune, Samples, Session, Wanted};
use super::state::JobState;
use super::view::{JobUpdate, JobView, Live};
use crate::store::jobs::{JobEventRow, JobProgress, JobRow, NewJob};
use crate::store::Store;

/// How long a cancel waits for the plugin to stop before the host ends the job itself.
pub const CANCEL_DEADLINE: Duration = Duration::from_secs(2);
/// Subscribers' channel capacity (a slow subscriber sees `Lagged`).
const EVENTS_CAPACITY: usize = 256;

mod run;
mod settings;
mod steer;
mod submit;

pub use settings::{training_backends, Settings};

#[derive(Debug, Default)]
struct Sched {
    queue: VecDeque<String>,
    running: HashMap<String, Arc<Control>>,
    stopping: bool,
}

/// Counts and timings for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct JobStats {
    /// Jobs per state.
    pub by_state: BTreeMap<&'static str, u64>,
    /// Training samples per second over running jobs.
    pub samples_per_second: f64,
}

/// The executor.
pub struct Jobs {
    settings: Settings,
    store: Mutex<Store>,
    backends: BTreeMap<String, Arc<Trainer>>,
    sched: Mutex<Sched>,
    live: Mutex<HashMap<String, Live>>,
    events: broadcast::Sender<JobUpdate>,
    /// Durations of ended jobs (seconds), drained by the metrics exporter.
    finished: Mutex<Vec<(JobState, f64)>>,
    /// The datasets of `remote://engine` jobs, by job id, while their stream is open.
    remote: Mutex<HashMap<String, Arc<RemoteData>>>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("settings", &self.settings)
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io(what: &str) -> impl Fn(std::io::Error) -> JobError + '_ {
    move |e| JobError::Io(format!("{what}: {e}"))
}

impl Jobs {
    /// The executor over `store` (its own connection) with `backends`; takes over the jobs a
    /// previous run left unfinished and starts the queued ones.
    pub fn start(
        settings: Settings,
        store: Store,
        backends: BTreeMap<String, Arc<Trainer>>,
    ) -> Result<Arc<Jobs>, JobError> {
        std::fs::create_dir_all(&settings.jobs_dir).map_err(io("creating the jobs directory"))?;
        let jobs = Arc::new(Jobs {
            settings,
            store: Mutex::new(store),
            backends,
            sched: Mutex::default(),
            live: Mutex::default(),
            events: broadcast::channel(EVENTS_CAPACITY).0,
            finished: Mutex::default(),
            remote: Mutex::default(),
        });
        jobs.recover()?;
        jobs.dispatch();
        Ok(jobs)
    }

    /// The training backends loaded, by plugin name.
    pub fn backends(&self) -> impl Iterator<Item = &str> {
        self.backends.keys().map(String::as_str)
    }

    /// Updates from now on (state changes, progress, checkpoints) for every job.
    pub fn subscribe(&self) -> broadcast::Receiver<JobUpdate> {
        self.events.subscribe()
    }

    fn recover(&self) -> Result<(), JobError> {
        let rows = lock(&self.store).unfinished_jobs()?;
        for row in rows {
            let dir = JobDir::at(PathBuf::from(&row.dir));
            let state = JobState::parse(&row.state).unwrap_or(JobState::Failed);
            let resume = self.settings.resume_after_restart;
            let has_checkpoint = row
                .checkpoint
                .as_deref()
                .is_some_and(|c| Path::new(c).is_file());
            match state {
                JobState::Queued => lock(&self.sched).queue.push_back(row.id.clone()),
                JobState::Paused if resume && has_checkpoint => {
                    self.log(
                        &dir,
                        "node restarted; the job stays paused at its checkpoint",
                    );
                }
                _ if resume && has_checkpoint => {
                    let detail = format!(
                        "node restarted during the job; resuming from the checkpoint after epoch {}",
                        row.checkpoint_epoch.unwrap_or(0)
                    );
                    self.transition(&row.id, &dir, JobState::Queued, &detail, None)?;
                    lock(&self.sched).queue.push_back(row.id.clone());
                }
                _ => {
                    let reason = if resume {
                        "node restarted during the job (no checkpoint to resume from)"
                    } else {
                        "node restarted during the job"
                    };
                    self.transition(&row.id, &dir, JobState::Failed, reason, Some(reason))?;
                }
            }
        }
        Ok(())
    }

    /// Writes a state change (row and event, one transaction), then tells subscribers.
    pub(super) fn transition(
        &self,
        id: &str,
        dir: &JobDir,
        to: JobState,
        detail: &str,
        error: Option<&str>,
    ) -> Result<(), JobError> {
        lock(&self.store).set_job_state(id, to.as_str(), detail, error)?;
        self.log(dir, &format!("{to}: {detail}"));
        if to.is_terminal() {
            lock(&self.live).remove(id);
        }
        let _ = self.events.send(JobUpdate::state(id, to, detail));
        Ok(())
    }

    /// Appends a line to the job's `log.txt` (Unix time first).
    pub(super) fn log(&self, dir: &JobDir, line: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let _ = dir.append(&dir.log(), &format!("{now:.3} {}", line.escape_debug()));
    }

    /// Records progress (throttled by the session): SQLite, `metrics.jsonl`, subscribers.
    pub(super) fn progress(
        &self,
        id: &str,
        dir: &JobDir,
        p: JobProgress,
        rate: f64,
        eta: Option<f64>,
        epoch_end: bool,
    ) {
        // An epoch's end is one transaction: progress, event and the central server's report.
        let recorded = if epoch_end {
            lock(&self.store).record_epoch(id, &p, &format!("epoch {} done", p.epoch))
        } else {
            lock(&self.store).set_job_progress(id, &p)
        };
        if let Err(e) = recorded {
            tracing::warn!(job = id, error = %e, "cannot record job progress");
        }
        let metrics: serde_json::Value =
            serde_json::from_str(&p.metrics).unwrap_or(serde_json::Value::Null);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let line = serde_json::json!({
            "time": now,
            "kind": if epoch_end { "epoch" } else { "progress" },
            "epoch": p.epoch,
            "step": p.step,
            "total_steps": p.total_steps,
            "samples": p.samples,
            "samples_per_second": rate,
            "metrics": metrics,
        });
        let _ = dir.append(&dir.metrics(), &line.to_string());
        if epoch_end {
            let summary: Vec<String> = metrics
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            self.log(
                dir,
                &format!("epoch {} done: {}", p.epoch, summary.join(" ")),
            );
        }
        let live = Live {
            samples_per_second: rate,
            eta_seconds: eta,
        };
        lock(&self.live).insert(id.to_owned(), live);
        let _ = self.events.send(JobUpdate::progress(id, &p, metrics, live));
    }

    /// Records a durable checkpoint.
    pub(super) fn checkpointed(
        &self,
        id: &str,
        dir: &JobDir,
        path: &Path,
        epochs: u32,
        steps: u64,
        detail: &str,
    ) -> Result<(), JobError> {
        lock(&self.store).set_job_checkpoint(id, &path.to_string_lossy(), epochs, steps, detail)?;
        self.log(dir, detail);
        let _ = self
            .events
            .send(JobUpdate::checkpoint(id, epochs, steps, detail));
        Ok(())
    }

    /// Writes the job's weights from checkpoint bytes and records their hash.
    pub(super) fn write_weights(
        &self,
        id: &str,
        dir: &JobDir,
        checkpoint: &[u8],
    ) -> Result<(), JobError> {
        let (sha, size) = weights_from_checkpoint(dir, checkpoint).map_err(JobError::Io)?;
        lock(&self.store).set_job_weights(id, &sha, size)?;
        self.log(
            dir,
            &format!("weights.safetensors written: {size} bytes, sha256 {sha}"),
        );
        Ok(())
    }

    /// Ids of the unfinished jobs that came from the network (not `local`).
    pub fn active_network_jobs(&self) -> Vec<String> {
        match lock(&self.store).unfinished_jobs() {
            Ok(rows) => rows
                .into_iter()
                .filter(|r| r.origin != "local")
                .map(|r| r.id)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the active jobs");
                Vec::new()
            }
        }
    }

    /// The job's latest durable checkpoint file, if it has one.
    pub fn checkpoint_path(&self, id: &str) -> Result<Option<PathBuf>, JobError> {
        let id = parse_id(id)?;
        let row = lock(&self.store).job(&id)?;
        Ok(row
            .and_then(|r| r.checkpoint)
            .map(PathBuf::from)
            .filter(|p| p.is_file()))
    }

    /// One job as callers see it.
    pub fn get(&self, id: &str) -> Result<JobView, JobError> {
        let id = parse_id(id)?;
        let row = lock(&self.store)
            .job(&id)?
            .ok_or_else(|| JobError::NotFound(id.clone()))?;
        Ok(self.view(row))
    }

    fn view(&self, row: JobRow) -> JobView {
        let live = lock(&self.live).get(&row.id).copied();
        JobView::from_row(row, live)
    }

    /// Jobs, newest first.
    pub fn list(&self, state: Option<JobState>, limit: u32) -> Result<Vec<JobView>, JobError> {
        let rows = lock(&self.store).jobs(state.map(JobState::as_str), limit.clamp(1, 10_000))?;
        Ok(rows.into_iter().map(|r| self.view(r)).collect())
    }

    /// A job's events after `after_id`.
    pub fn events(
        &self,
        id: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<JobEventRow>, JobError> {
        let view = self.get(id)?;
        Ok(lock(&self.store).job_events(&view.id, after_id, limit.clamp(1, 10_000))?)
    }

    /// The job's `log.txt`.
    pub fn log_path(&self, id: &str) -> Result<PathBuf, JobError> {
        let view = self.get(id)?;
        Ok(JobDir::at(PathBuf::from(&view.dir)).log())
    }

    /// The job's weights file, with its sha256 and size.
    pub fn weights(&self, id: &str) -> Result<(PathBuf, String, u64), JobError> {
        let view = self.get(id)?;
        match (&view.weights_sha256, view.weights_bytes) {
            (Some(sha), Some(size)) => {
                let path = JobDir::at(PathBuf::from(&view.dir)).weights();
                if path.is_file() {
                    return Ok((path, sha.clone(), size));
                }
                Err(JobError::NoWeights(view.id))
            }
            _ => Err(JobError::NoWeights(view.id)),
        }
    }

    /// Counts by state and the current training rate, for `/metrics`.
    pub fn stats(&self) -> JobStats {
        let mut by_state: BTreeMap<&'static str, u64> =
            JobState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        if let Ok(counts) = lock(&self.store).job_counts() {
            for (state, n) in counts {
                if let Some(s) = JobState::parse(&state) {
                    by_state.insert(s.as_str(), n);
                }
            }
        }
        let samples_per_second = lock(&self.live)
            .values()
            .map(|l| l.samples_per_second)
            .sum();
        JobStats {
            by_state,
            samples_per_second,
        }
    }

    /// Durations of jobs that ended since the last call (state, seconds).
    pub fn drain_finished(&self) -> Vec<(JobState, f64)> {
        std::mem::take(&mut *lock(&self.finished))
    }
}

/// A job id must be a UUID (any version); returned in canonical lowercase form.
pub fn parse_id(id: &str) -> Result<String, JobError> {
    let bad = || JobError::BadId(id.chars().take(64).collect());
    // A UUID, or a later job of a P2P reservation: `<reservation uuid>_<suffix>` (the Engine
    // uses Unix seconds). Ids name directories, so nothing else is accepted.
    let (head, suffix) = match id.split_once('_') {
        Some((head, suffix)) => (head, Some(suffix)),
        None => (id, None),
    };
    let uuid = uuid::Uuid::parse_str(head).map_err(|_| bad())?;
    match suffix {
        None => Ok(uuid.to_string()),
        Some(s)
            if !s.is_empty()
                && s.len() <= 32
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Ok(format!("{uuid}_{s}"))
        }
        Some(_) => Err(bad()),
    }
}
