//! The job executor: accepts jobs (validating graph and dataset before anything is queued),
//! keeps the queue, runs at most `[node] max_concurrent_jobs` jobs on their own threads
//! (never on the async runtime), obeys pause/resume/cancel, takes over unfinished jobs after
//! a restart, and stops cleanly with the node. Every state change is written to SQLite before
//! subscribers hear of it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cyxwiz_plugin_host::Trainer;
use cyxwiz_sdk::training::{DatasetShape, ModelSpec, TrainingJob};
use tokio::sync::broadcast;

use super::dataset::{self, DatasetSource, SourceConfig};
use super::dir::{write_atomic, JobDir};
use super::error::JobError;
use super::graph::parse_model_definition;
use super::request::{DatasetRef, JobConfig, JobRequest};
use super::session::{weights_from_checkpoint, Control, Data, Session, Wanted};
use super::state::JobState;
use super::view::{JobUpdate, JobView, Live};
use crate::store::jobs::{JobEventRow, JobProgress, JobRow, NewJob};
use crate::store::Store;

/// How long a cancel waits for the plugin to stop before the host ends the job itself.
pub const CANCEL_DEADLINE: Duration = Duration::from_secs(2);
/// Subscribers' channel capacity (a slow subscriber sees `Lagged`).
const EVENTS_CAPACITY: usize = 256;

/// What the executor is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `<data dir>/jobs`.
    pub jobs_dir: PathBuf,
    /// Jobs that run at once.
    pub max_running: usize,
    /// Jobs that may wait.
    pub max_queued: usize,
    /// Resume interrupted jobs from their checkpoint after a restart.
    pub resume_after_restart: bool,
    /// The backend when a job names none.
    pub default_backend: String,
    /// Where datasets may come from.
    pub sources: SourceConfig,
    /// Intra-op threads per job (0: the backend's default).
    pub threads: u32,
}

impl Settings {
    /// The settings `config` gives.
    pub fn for_config(config: &crate::config::Config) -> Self {
        Self {
            jobs_dir: config.jobs_dir(),
            max_running: config.node.max_concurrent_jobs.max(1) as usize,
            max_queued: config.jobs.max_queued_jobs as usize,
            resume_after_restart: config.jobs.resume_after_restart,
            default_backend: config.jobs.default_backend.clone(),
            sources: SourceConfig::new(
                config.models_dir(),
                config.dataset_dirs(),
                config.jobs.max_inline_dataset_bytes,
            ),
            threads: config.jobs.threads_per_job,
        }
    }
}

/// The training backends of the loaded plugins (those declaring training), by plugin name.
/// A plugin whose backend fails to start is logged and left out.
pub fn training_backends(registry: &crate::plugins::Registry) -> BTreeMap<String, Arc<Trainer>> {
    let mut out = BTreeMap::new();
    for lib in registry.loaded() {
        let meta = lib.metadata();
        if !meta
            .capabilities
            .contains(cyxwiz_sdk::Capabilities::TRAINING)
        {
            continue;
        }
        match lib.training_backend() {
            Ok(trainer) => {
                out.insert(meta.name.clone(), Arc::new(trainer));
            }
            Err(e) => {
                tracing::warn!(plugin = %meta.name, error = %e, "training backend unavailable");
            }
        }
    }
    out
}

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
        if let Err(e) = lock(&self.store).set_job_progress(id, &p) {
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
            let _ = lock(&self.store).job_event(id, "epoch", &format!("epoch {} done", p.epoch));
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

    /// Validates and queues a job; returns its id. Blocking: it reads the dataset to learn
    /// its shape and check it (call from a blocking thread).
    pub fn submit(
        self: &Arc<Self>,
        request: JobRequest,
        id: Option<String>,
        origin: &str,
    ) -> Result<JobView, JobError> {
        let config = request.validate(&self.settings.default_backend, origin)?;
        let id = match id {
            Some(id) => parse_id(&id)?,
            None => uuid::Uuid::new_v4().to_string(),
        };
        self.backend(&config.backend)?;
        self.check_room()?;
        if lock(&self.store).job(&id)?.is_some() {
            return Err(JobError::Exists(id));
        }
        let inline = request.inline_dataset.as_deref();
        let (data, _) = self.load_data(&config, inline)?;
        let shape = DatasetShape {
            sample: data.train.shape().to_vec(),
            classes: data.train.classes() as usize,
        };
        let spec = parse_model_definition(&request.graph, &shape, config.learning_rate)?;
        drop(data);
        let dir = JobDir::new(&self.settings.jobs_dir, &id);
        dir.create().map_err(io("creating the job directory"))?;
        let write = |path: PathBuf, bytes: &[u8]| {
            write_atomic(&path, bytes).map_err(io("writing job files"))
        };
        let config_json =
            serde_json::to_vec_pretty(&config).map_err(|e| JobError::Io(e.to_string()))?;
        write(dir.config(), &config_json)?;
        write(dir.graph(), request.graph.as_bytes())?;
        let model_json =
            serde_json::to_vec_pretty(&spec).map_err(|e| JobError::Io(e.to_string()))?;
        write(dir.model(), &model_json)?;
        if let Some(bytes) = inline {
            write(dir.inline_dataset(), bytes)?;
        }
        {
            let mut sched = lock(&self.sched);
            if sched.stopping {
                return Err(JobError::ShuttingDown);
            }
            self.room_in(&sched)?;
            let config_text = String::from_utf8_lossy(&config_json);
            lock(&self.store).insert_job(&NewJob {
                id: &id,
                origin,
                config: &config_text,
                backend: &config.backend,
                dir: &dir.root().to_string_lossy(),
                total_epochs: config.epochs,
            })?;
            sched.queue.push_back(id.clone());
        }
        self.log(
            &dir,
            &format!(
                "submitted: {} parameters, {} epochs, batch {}, backend {}, device {}, seed {}",
                spec.parameter_count(),
                config.epochs,
                config.batch_size,
                config.backend,
                config.device,
                config.seed
            ),
        );
        let _ = self
            .events
            .send(JobUpdate::state(&id, JobState::Queued, "submitted"));
        self.dispatch();
        self.get(&id)
    }

    fn backend(&self, name: &str) -> Result<Arc<Trainer>, JobError> {
        self.backends
            .get(name)
            .cloned()
            .ok_or_else(|| JobError::NoBackend {
                name: name.chars().take(64).collect(),
                loaded: if self.backends.is_empty() {
                    "none".into()
                } else {
                    self.backends.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })
    }

    fn check_room(&self) -> Result<(), JobError> {
        self.room_in(&lock(&self.sched))
    }

    fn room_in(&self, sched: &Sched) -> Result<(), JobError> {
        let free_slot = sched.running.len() < self.settings.max_running && sched.queue.is_empty();
        if !free_slot && sched.queue.len() >= self.settings.max_queued {
            return Err(JobError::QueueFull {
                queued: sched.queue.len(),
                max: self.settings.max_queued as u32,
            });
        }
        Ok(())
    }

    /// Loads and splits a job's dataset.
    fn load_data(
        &self,
        config: &JobConfig,
        inline: Option<&[u8]>,
    ) -> Result<(Data, DatasetShape), JobError> {
        let source = match (&config.dataset, inline) {
            (DatasetRef::Uri(uri), _) => DatasetSource::parse(uri)?,
            (DatasetRef::Inline, Some(bytes)) => {
                if bytes.len() > self.settings.sources.inline_limit {
                    return Err(dataset::DatasetError::InlineTooLarge {
                        size: bytes.len(),
                        limit: self.settings.sources.inline_limit,
                    }
                    .into());
                }
                DatasetSource::Inline(bytes.to_vec())
            }
            (DatasetRef::Inline, None) => {
                return Err(JobError::Io("the job's inline dataset is missing".into()))
            }
        };
        let loaded = dataset::load(
            &source,
            &self.settings.sources,
            config.label_column.as_deref(),
        )?;
        let split = loaded.train.split(config.validation_split, config.seed)?;
        let shape = DatasetShape {
            sample: split.train.shape().to_vec(),
            classes: split.train.classes() as usize,
        };
        Ok((
            Data {
                train: split.train,
                validation: split.validation,
            },
            shape,
        ))
    }

    /// Starts queued jobs while slots are free.
    fn dispatch(self: &Arc<Self>) {
        let mut sched = lock(&self.sched);
        while !sched.stopping && sched.running.len() < self.settings.max_running {
            let Some(id) = sched.queue.pop_front() else {
                break;
            };
            let control = Arc::new(Control::default());
            sched.running.insert(id.clone(), control.clone());
            let me = Arc::clone(self);
            let name = format!("job-{}", &id[..8.min(id.len())]);
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                me.work(&id, &control);
                control.finish();
                lock(&me.sched).running.remove(&id);
                me.dispatch();
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a job thread");
                break;
            }
        }
    }

    /// Runs one job to its end (or until it is interrupted).
    fn work(self: &Arc<Self>, id: &str, control: &Arc<Control>) {
        let row = match lock(&self.store).job(id) {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(job = id, error = %e, "cannot read the job");
                return;
            }
        };
        let dir = JobDir::at(PathBuf::from(&row.dir));
        let started = Instant::now();
        let result = self.run(&row, &dir, control);
        if control.abandoned.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let wanted = control.wanted();
        let (to, detail, error) = match result {
            Ok(outcome) if !outcome.stopped => {
                let m: Vec<String> = outcome
                    .metrics
                    .iter()
                    .map(|m| format!("{}={:.4}", m.name, m.value))
                    .collect();
                (
                    JobState::Succeeded,
                    format!("finished {} epochs: {}", outcome.epochs_done, m.join(" ")),
                    None,
                )
            }
            Ok(_) | Err(_) if wanted == Wanted::Shutdown => {
                if self.settings.resume_after_restart {
                    (
                        JobState::Queued,
                        "node stopping; the job resumes from its checkpoint after a restart"
                            .to_owned(),
                        None,
                    )
                } else {
                    let r = "node stopped during the job".to_owned();
                    (JobState::Failed, r.clone(), Some(r))
                }
            }
            Ok(_) | Err(_) if wanted == Wanted::Cancel => {
                let kept = if dir.weights().is_file() {
                    "partial weights kept"
                } else {
                    "no weights yet"
                };
                (
                    JobState::Cancelled,
                    format!("cancelled; {kept}"),
                    Some(format!("cancelled by a caller; {kept}")),
                )
            }
            Ok(outcome) => (
                JobState::Failed,
                "the backend stopped early".to_owned(),
                Some(format!(
                    "the backend stopped after {} epochs without being asked",
                    outcome.epochs_done
                )),
            ),
            Err(e) => {
                let msg = e.to_string();
                (JobState::Failed, msg.clone(), Some(msg))
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        if let Err(e) = self.transition(id, &dir, to, &detail, error.as_deref()) {
            tracing::error!(job = id, error = %e, "cannot record the job's end");
        }
        if to.is_terminal() {
            lock(&self.finished).push((to, seconds));
        }
    }

    fn run(
        self: &Arc<Self>,
        row: &JobRow,
        dir: &JobDir,
        control: &Arc<Control>,
    ) -> Result<cyxwiz_sdk::training::TrainingOutcome, JobError> {
        self.transition(
            &row.id,
            dir,
            JobState::Preparing,
            "loading the dataset",
            None,
        )?;
        let config: JobConfig = serde_json::from_str(&row.config)
            .map_err(|e| JobError::Io(format!("config.json: {e}")))?;
        let trainer = self.backend(&config.backend)?;
        let inline = match config.dataset {
            DatasetRef::Inline => {
                Some(std::fs::read(dir.inline_dataset()).map_err(io("reading dataset.bin"))?)
            }
            DatasetRef::Uri(_) => None,
        };
        let (data, _) = self.load_data(&config, inline.as_deref())?;
        let model: ModelSpec =
            serde_json::from_slice(&std::fs::read(dir.model()).map_err(io("reading model.json"))?)
                .map_err(|e| JobError::Io(format!("model.json: {e}")))?;
        let resume = match &row.checkpoint {
            Some(path) if Path::new(path).is_file() => {
                std::fs::read(path).map_err(io("reading the checkpoint"))?
            }
            _ => Vec::new(),
        };
        let batch_size = config.batch_size as usize;
        let (_, validation_batches) = data.validation_batches(batch_size);
        let job = TrainingJob {
            job_id: row.id.clone(),
            model,
            epochs: config.epochs,
            batch_size: config.batch_size,
            train_batches: data.train_batches(batch_size),
            validation_batches,
            seed: config.seed,
            device: config.device.clone(),
            threads: self.settings.threads,
            work_dir: dir.work(),
            resume,
        };
        let detail = if job.resume.is_empty() {
            format!(
                "training on {} samples ({} batches per epoch)",
                data.train.len(),
                job.train_batches
            )
        } else {
            format!(
                "resuming from the checkpoint after epoch {}",
                row.checkpoint_epoch.unwrap_or(0)
            )
        };
        self.transition(&row.id, dir, JobState::Running, &detail, None)?;
        let mut session = Session {
            jobs: Arc::clone(self),
            id: row.id.clone(),
            dir: dir.clone(),
            control: Arc::clone(control),
            seed: config.seed,
            batch_size,
            total_epochs: config.epochs,
            samples_at_start: row.samples,
            started: Instant::now(),
            run_seconds_before: row.run_seconds,
            last_write: None,
            order: None,
            metrics: BTreeMap::new(),
            last_checkpoint: None,
            data,
        };
        trainer
            .train(&job, &mut session)
            .map_err(|e| JobError::Training(e.message))
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

    /// Cancels a job: a queued or paused-without-thread job at once; a running one within
    /// [`CANCEL_DEADLINE`] (after which the host ends it itself, keeping the weights of its
    /// last checkpoint). Blocking: waits for the outcome.
    pub fn cancel(self: &Arc<Self>, id: &str) -> Result<JobView, JobError> {
        let view = self.get(id)?;
        let state = view.state;
        if state.is_terminal() {
            return Err(JobError::WrongState {
                id: view.id,
                state,
                what: "it has ended already",
            });
        }
        let dir = JobDir::at(PathBuf::from(&view.dir));
        let control = {
            let mut sched = lock(&self.sched);
            match sched.running.get(&view.id) {
                Some(c) => Some(c.clone()),
                None => {
                    sched.queue.retain(|q| q != &view.id);
                    None
                }
            }
        };
        let Some(control) = control else {
            // Queued, or paused across a restart: nothing runs; keep the checkpoint's weights.
            if let Some(cp) = self.latest_checkpoint(&view.id)? {
                if let Ok(bytes) = std::fs::read(&cp) {
                    let _ = self.write_weights(&view.id, &dir, &bytes);
                }
            }
            let kept = if dir.weights().is_file() {
                "partial weights kept"
            } else {
                "no weights yet"
            };
            self.transition(
                &view.id,
                &dir,
                JobState::Cancelled,
                &format!("cancelled; {kept}"),
                Some(&format!("cancelled by a caller; {kept}")),
            )?;
            return self.get(&view.id);
        };
        control.want(Wanted::Cancel);
        if !control.wait_done(CANCEL_DEADLINE) {
            control
                .abandoned
                .store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(cp) = self.latest_checkpoint(&view.id)? {
                if let Ok(bytes) = std::fs::read(&cp) {
                    let _ = self.write_weights(&view.id, &dir, &bytes);
                }
            }
            let kept = if dir.weights().is_file() {
                "partial weights from the last checkpoint kept"
            } else {
                "no weights yet"
            };
            let msg = format!("cancelled; the backend did not stop within {} s, so the node ended the job; {kept}", CANCEL_DEADLINE.as_secs());
            self.transition(&view.id, &dir, JobState::Cancelled, &msg, Some(&msg))?;
            lock(&self.finished).push((JobState::Cancelled, 0.0));
        }
        self.get(&view.id)
    }

    fn latest_checkpoint(&self, id: &str) -> Result<Option<PathBuf>, JobError> {
        let row = lock(&self.store).job(id)?;
        Ok(row
            .and_then(|r| r.checkpoint)
            .map(PathBuf::from)
            .filter(|p| p.is_file()))
    }

    /// Pauses a running job at its next step (it checkpoints first).
    pub fn pause(&self, id: &str) -> Result<JobView, JobError> {
        let view = self.get(id)?;
        let control = lock(&self.sched).running.get(&view.id).cloned();
        match (view.state, control) {
            (JobState::Preparing | JobState::Running, Some(c)) => {
                c.want(Wanted::Pause);
                self.get(&view.id)
            }
            (JobState::Paused, _) => Ok(view),
            (state, _) => Err(JobError::WrongState {
                id: view.id,
                state,
                what: "only a running job can be paused",
            }),
        }
    }

    /// Resumes a paused job.
    pub fn resume(self: &Arc<Self>, id: &str) -> Result<JobView, JobError> {
        let view = self.get(id)?;
        let control = lock(&self.sched).running.get(&view.id).cloned();
        match (view.state, control) {
            (JobState::Paused | JobState::Running | JobState::Preparing, Some(c)) => {
                c.want(Wanted::Run);
                self.get(&view.id)
            }
            (JobState::Paused, None) => {
                // Paused across a restart: queue it; it resumes from its checkpoint.
                let dir = JobDir::at(PathBuf::from(&view.dir));
                {
                    let mut sched = lock(&self.sched);
                    self.transition(
                        &view.id,
                        &dir,
                        JobState::Queued,
                        "resumed; waiting for a slot",
                        None,
                    )?;
                    sched.queue.push_back(view.id.clone());
                }
                self.dispatch();
                self.get(&view.id)
            }
            (state, _) => Err(JobError::WrongState {
                id: view.id,
                state,
                what: "only a paused job can be resumed",
            }),
        }
    }

    /// Stops with the node: running jobs checkpoint and stop (resumed after a restart when
    /// `resume_after_restart`); waits up to `timeout` for them.
    pub fn shutdown(&self, timeout: Duration) {
        let controls: Vec<Arc<Control>> = {
            let mut sched = lock(&self.sched);
            sched.stopping = true;
            sched.running.values().cloned().collect()
        };
        for c in &controls {
            c.want(Wanted::Shutdown);
        }
        let deadline = Instant::now() + timeout;
        for c in &controls {
            c.wait_done(deadline.saturating_duration_since(Instant::now()));
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
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| JobError::BadId(id.chars().take(64).collect()))
}
