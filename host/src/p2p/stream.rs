//! `StreamTrainingMetrics`: one Engine's training stream. The node asks for the Engine's
//! dataset (`dataset_info_request`, retried because the Engine registers a new job's data
//! late), pulls batches (`batch_request`, several in flight), relays the job's progress, logs
//! and checkpoints, ends each job with `complete` or `error`, obeys the Engine's commands and
//! keeps the stream open for the reservation's next job until `reservation_end`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cyxwiz_proto::protocol::{
    training_command::Command, training_update::Update, BatchRequest, DatasetInfoRequest,
    DatasetInfoResponse, DatasetSplit, LogMessage, StatusCode, TrainingCheckpoint, TrainingCommand,
    TrainingComplete, TrainingError, TrainingProgress, TrainingUpdate, UpdateHyperparameters,
};
use cyxwiz_sdk::training::{DataSplit, TensorFile};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};
use tonic::{Status, Streaming};

use super::service::hex;
use super::token::Claims;
use super::P2p;
use crate::jobs::dataset::{MAX_CLASSES, MAX_SAMPLES, MAX_SAMPLE_LEN};
use crate::jobs::remote::{BatchAsk, RawBatch, RemoteData, RemoteShape};
use crate::jobs::{JobState, JobUpdate, JobView, Origin, Retune};

type Out = mpsc::Sender<Result<TrainingUpdate, Status>>;

/// How often the node asks again for a dataset the Engine has not registered yet.
const INFO_RETRY: Duration = Duration::from_secs(2);
/// Progress messages at most this often (epoch ends always go out).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

fn unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn update(job_id: &str, u: Update) -> TrainingUpdate {
    TrainingUpdate {
        job_id: job_id.to_owned(),
        timestamp: unix(),
        update: Some(u),
    }
}

fn log(job_id: &str, level: i32, message: impl Into<String>) -> TrainingUpdate {
    update(
        job_id,
        Update::Log(LogMessage {
            level,
            message: message.into(),
            source: "node".into(),
        }),
    )
}

const INFO: i32 = 1;
const WARNING: i32 = 2;

/// Where the stream's current job stands.
enum Phase {
    /// No job (between jobs, or before the first one is sent).
    Idle,
    /// Waiting for the Engine to describe its dataset.
    AwaitInfo { asked: Instant, first: Instant },
    /// In the executor.
    Running,
}

struct Driver {
    p2p: Arc<P2p>,
    claims: Claims,
    peer: String,
    out: Out,
    job: String,
    phase: Phase,
    remote: Option<Arc<RemoteData>>,
    asks: Option<mpsc::UnboundedReceiver<BatchAsk>>,
    last_progress: Option<Instant>,
    /// The current job's epochs.
    total_epochs: u32,
    /// When the current job started on this stream.
    started: Option<Instant>,
    /// Since when the stream's job has been awaited (not sent yet).
    waiting: Option<Instant>,
    /// How many of the reservation's jobs existed when the stream opened: later ones (sent
    /// with StartNewJob while the stream is idle) run on this stream.
    known_jobs: usize,
    /// When the job's state was last read (a missed end event is caught by this check).
    checked: Instant,
}

/// Opens the stream for `job_id` (already authorised) and returns what the node sends.
pub fn open(
    p2p: Arc<P2p>,
    claims: Claims,
    peer: String,
    job_id: String,
    inbound: Streaming<TrainingCommand>,
) -> mpsc::Receiver<Result<TrainingUpdate, Status>> {
    let (out, rx) = mpsc::channel(64);
    let events = p2p.node.jobs.subscribe();
    p2p.node.audit(
        "p2p_stream",
        &job_id,
        &format!("training stream opened by {peer}"),
    );
    let driver = Driver {
        p2p,
        claims,
        peer,
        out,
        job: job_id,
        phase: Phase::Idle,
        remote: None,
        asks: None,
        last_progress: None,
        total_epochs: 0,
        started: None,
        waiting: None,
        known_jobs: 0,
        checked: Instant::now(),
    };
    tokio::spawn(driver.run(inbound, events));
    rx
}

async fn next_ask(asks: &mut Option<mpsc::UnboundedReceiver<BatchAsk>>) -> Option<BatchAsk> {
    match asks {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    /// Job `id` as callers see it (a database read, off the async threads).
    async fn view(&self, id: &str) -> Option<JobView> {
        let jobs = self.p2p.node.jobs.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || jobs.get(&id).ok())
            .await
            .ok()
            .flatten()
    }

    async fn send(&self, u: TrainingUpdate) -> bool {
        self.out.send(Ok(u)).await.is_ok()
    }

    async fn run(
        mut self,
        mut inbound: Streaming<TrainingCommand>,
        mut events: broadcast::Receiver<JobUpdate>,
    ) {
        let job = self.job.clone();
        self.known_jobs = self.p2p.with_reservation(&self.claims, &self.peer, |r| {
            r.streams += 1;
            r.jobs
                .iter()
                .position(|j| *j == job)
                .map_or(r.jobs.len(), |i| i + 1)
        });
        self.start(&job).await;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(command)) => {
                        if !self.command(command).await {
                            break;
                        }
                    }
                    Ok(None) => {
                        self.gone("the Engine closed the training stream");
                        break;
                    }
                    Err(status) => {
                        self.gone(&format!("the training stream broke: {}", status.message()));
                        break;
                    }
                },
                ask = next_ask(&mut self.asks) => {
                    if let Some(ask) = ask {
                        let split = if ask.split == DataSplit::VALIDATION {
                            DatasetSplit::SplitValidation
                        } else {
                            DatasetSplit::SplitTrain
                        };
                        let request = BatchRequest {
                            job_id: self.job.clone(),
                            auth_token: String::new(),
                            split: split as i32,
                            sample_indices: ask.indices,
                            request_id: ask.request_id,
                        };
                        if !self.send(update(&self.job, Update::BatchRequest(request))).await {
                            break;
                        }
                    }
                }
                event = events.recv() => match event {
                    Ok(event) if event.job_id == self.job => {
                        if !self.relay(event).await {
                            break;
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    if !self.retry_info().await || !self.check().await {
                        break;
                    }
                }
            }
        }
        if let Some(remote) = self.remote.take() {
            remote.close("the Engine's training stream has closed");
        }
        self.p2p.with_reservation(&self.claims, &self.peer, |r| {
            r.connected = false;
            r.streams = r.streams.saturating_sub(1);
        });
    }

    /// The Engine left: a job reading its data cannot continue.
    fn gone(&mut self, why: &str) {
        tracing::info!(job = %self.job, reason = why, "P2P training stream ended");
        self.p2p.node.audit("p2p_stream", &self.job, why);
        if let Some(remote) = self.remote.take() {
            self.p2p.node.jobs.detach_remote(&self.job, why);
            remote.close(why);
        }
    }

    /// Starts (or attaches to) job `id`.
    async fn start(&mut self, id: &str) {
        let awaited = self.waiting.take().filter(|_| self.job == id);
        self.job = id.to_owned();
        self.last_progress = None;
        self.started = Some(Instant::now());
        let pending = self
            .p2p
            .with_reservation(&self.claims, &self.peer, |r| r.pending.contains_key(id));
        if pending {
            self.phase = Phase::AwaitInfo {
                asked: Instant::now(),
                first: Instant::now(),
            };
            self.ask_info().await;
            return;
        }
        let view = self.view(id).await;
        match view {
            Some(view) if view.reservation.as_deref() == Some(self.claims.job_id.as_str()) => {
                self.phase = Phase::Running;
                self.total_epochs = view.total_epochs;
                if view.state.is_terminal() {
                    self.finish(view).await;
                } else {
                    let _ = self
                        .send(log(id, INFO, format!("job {id} is {}", view.state)))
                        .await;
                }
            }
            _ => {
                // The Engine may open the stream before its SendJob lands: wait for it
                // (bounded by `check`), saying so once.
                self.phase = Phase::Idle;
                self.waiting = Some(awaited.unwrap_or_else(Instant::now));
                if awaited.is_some() {
                    return;
                }
                let _ = self
                    .send(log(
                        id,
                        INFO,
                        format!(
                            "waiting for job {} of this reservation (send it with SendJob, StartNewJob or new_job_config)",
                            crate::audit::clean(id, 64)
                        ),
                    ))
                    .await;
            }
        }
    }

    async fn ask_info(&self) -> bool {
        self.send(update(
            &self.job,
            Update::DatasetInfoRequest(DatasetInfoRequest {
                job_id: self.job.clone(),
                auth_token: String::new(),
            }),
        ))
        .await
    }

    /// Asks again for a dataset not described yet; gives up after the batch timeout.
    async fn retry_info(&mut self) -> bool {
        let Phase::AwaitInfo { asked, first } = self.phase else {
            return true;
        };
        let limit = Duration::from_secs(self.p2p.node.config.p2p.batch_timeout_seconds);
        if first.elapsed() >= limit {
            let why = format!(
                "the Engine did not describe the dataset of job {} within {} s ([p2p] batch_timeout_seconds)",
                self.job,
                limit.as_secs()
            );
            return self.refuse(&why, "DATASET_TIMEOUT").await;
        }
        if asked.elapsed() >= INFO_RETRY {
            self.phase = Phase::AwaitInfo {
                asked: Instant::now(),
                first,
            };
            return self.ask_info().await;
        }
        true
    }

    /// Starts a job that arrived after the stream opened, and catches a job end whose event
    /// was missed (a lagging subscriber).
    async fn check(&mut self) -> bool {
        if matches!(self.phase, Phase::Idle) {
            let me = self.job.clone();
            let known = self.known_jobs;
            let waiting = self.waiting;
            let next = self.p2p.with_reservation(&self.claims, &self.peer, |r| {
                if r.ended {
                    None
                } else if waiting.is_some() {
                    r.jobs.contains(&me).then(|| me.clone())
                } else {
                    r.jobs
                        .iter()
                        .skip(known)
                        .find(|j| r.pending.contains_key(*j))
                        .cloned()
                }
            });
            if let Some(id) = next {
                self.known_jobs = self.p2p.with_reservation(&self.claims, &self.peer, |r| {
                    r.jobs
                        .iter()
                        .position(|j| *j == id)
                        .map_or(known, |i| i + 1)
                });
                self.start(&id).await;
                return true;
            }
            let limit = Duration::from_secs(self.p2p.node.config.p2p.batch_timeout_seconds);
            if self.waiting.is_some_and(|since| since.elapsed() >= limit) {
                self.waiting = None;
                let why = format!(
                    "job {} was not sent within {} s; send it with SendJob, StartNewJob or new_job_config",
                    crate::audit::clean(&me, 64),
                    limit.as_secs()
                );
                return self
                    .send(update(
                        &me,
                        Update::Error(TrainingError {
                            error_code: "NOT_FOUND".into(),
                            error_message: why,
                            stack_trace: String::new(),
                            epoch_at_error: 0,
                            recoverable: true,
                        }),
                    ))
                    .await;
            }
            return true;
        }
        if !matches!(self.phase, Phase::Running) || self.checked.elapsed() < Duration::from_secs(2)
        {
            return true;
        }
        self.checked = Instant::now();
        let view = self.view(&self.job).await;
        match view {
            Some(view) if view.state.is_terminal() => self.finish(view).await,
            _ => true,
        }
    }

    /// Drops the pending job with an error the Engine sees.
    async fn refuse(&mut self, why: &str, code: &str) -> bool {
        let id = self.job.clone();
        self.p2p.with_reservation(&self.claims, &self.peer, |r| {
            r.pending.remove(&id);
        });
        self.p2p.node.audit("p2p_job_refused", &id, why);
        self.phase = Phase::Idle;
        self.send(update(
            &id,
            Update::Error(TrainingError {
                error_code: code.into(),
                error_message: why.into(),
                stack_trace: String::new(),
                epoch_at_error: 0,
                recoverable: false,
            }),
        ))
        .await
    }

    /// Checks the Engine's dataset description.
    fn shape(&self, info: &DatasetInfoResponse) -> Result<RemoteShape, String> {
        let train = info.train.as_ref().filter(|s| s.available);
        let Some(train) = train else {
            return Err("the Engine's dataset has no available train split".into());
        };
        let count = |n: i64, what: &str| {
            usize::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_SAMPLES)
                .ok_or_else(|| format!("{what} has {n} samples (0..={MAX_SAMPLES} accepted)"))
        };
        let train = count(train.num_samples, "the train split")?;
        if train == 0 {
            return Err("the train split is empty".into());
        }
        let validation = match info.validation.as_ref().filter(|s| s.available) {
            Some(v) => count(v.num_samples, "the validation split")?,
            None => 0,
        };
        let mut sample = Vec::new();
        let mut len: usize = 1;
        for &d in &info.sample_shape {
            let d = usize::try_from(d)
                .ok()
                .filter(|d| (1..=MAX_SAMPLE_LEN).contains(d))
                .ok_or_else(|| {
                    format!("sample_shape {:?} has a bad dimension", info.sample_shape)
                })?;
            len = len.saturating_mul(d);
            sample.push(d);
        }
        if sample.is_empty() || len > MAX_SAMPLE_LEN {
            return Err(format!(
                "sample_shape {:?} is empty or over {MAX_SAMPLE_LEN} values",
                info.sample_shape
            ));
        }
        let classes = u32::try_from(info.num_classes)
            .ok()
            .filter(|c| (2..=MAX_CLASSES).contains(c))
            .ok_or_else(|| {
                format!(
                    "num_classes {} is not in 2..={MAX_CLASSES}",
                    info.num_classes
                )
            })?;
        if !info.dtype.is_empty() && !info.dtype.eq_ignore_ascii_case("float32") {
            return Err(format!(
                "dtype {:?}: the node takes float32 samples",
                crate::audit::clean(&info.dtype, 32)
            ));
        }
        Ok(RemoteShape {
            train,
            validation,
            sample,
            classes,
        })
    }

    /// The Engine described its dataset: queue the job.
    async fn dataset_info(&mut self, info: DatasetInfoResponse) -> bool {
        if !matches!(self.phase, Phase::AwaitInfo { .. }) {
            return true;
        }
        if info.status != StatusCode::StatusSuccess as i32 {
            // Not registered yet: the retry tick asks again.
            let why = info.error.map(|e| e.message).unwrap_or_default();
            return self
                .send(log(
                    &self.job,
                    INFO,
                    format!(
                        "the Engine has no dataset for job {} yet ({}); asking again",
                        self.job,
                        crate::audit::clean(&why, 200)
                    ),
                ))
                .await;
        }
        let shape = match self.shape(&info) {
            Ok(s) => s,
            Err(why) => return self.refuse(&why, "BAD_DATASET").await,
        };
        let id = self.job.clone();
        let Some(wire) = self
            .p2p
            .with_reservation(&self.claims, &self.peer, |r| r.pending.remove(&id))
        else {
            return true;
        };
        let config = &self.p2p.node.config.p2p;
        let (ask_tx, ask_rx) = mpsc::unbounded_channel();
        let remote = Arc::new(RemoteData::new(
            shape.clone(),
            ask_tx,
            Duration::from_secs(config.batch_timeout_seconds),
            config.max_batch_bytes,
        ));
        let jobs = self.p2p.node.jobs.clone();
        jobs.attach_remote(&id, remote.clone());
        let origin = Origin {
            kind: "p2p",
            reservation: Some(self.claims.job_id.clone()),
            peer: Some(self.peer.clone()),
        };
        let key = id.clone();
        let request = wire.request;
        self.total_epochs = request.epochs.unwrap_or(1);
        let submitted =
            tokio::task::spawn_blocking(move || jobs.submit(request, Some(key), &origin)).await;
        match submitted {
            Ok(Ok(_)) => {
                self.remote = Some(remote);
                self.asks = Some(ask_rx);
                self.phase = Phase::Running;
                let notes = wire.notes.join("; ");
                self.send(log(
                    &id,
                    INFO,
                    format!(
                        "job {id} queued: {} training and {} validation samples of shape {:?}, {} classes{}{notes}",
                        shape.train,
                        shape.validation,
                        shape.sample,
                        shape.classes,
                        if notes.is_empty() { "" } else { "; " }
                    ),
                ))
                .await
            }
            Ok(Err(e)) => {
                self.p2p.node.jobs.detach_remote(&id, "refused");
                self.refuse(&e.to_string(), "REJECTED").await
            }
            Err(e) => {
                self.refuse(&format!("internal error: {e}"), "INTERNAL")
                    .await
            }
        }
    }

    /// Handles one command; false ends the stream.
    async fn command(&mut self, command: TrainingCommand) -> bool {
        let Some(command) = command.command else {
            return true;
        };
        match command {
            Command::BatchResponse(b) => {
                if let Some(remote) = &self.remote {
                    let answer = if b.status == StatusCode::StatusSuccess as i32 {
                        Ok(RawBatch {
                            images: b.images,
                            labels: b.labels,
                        })
                    } else {
                        Err(format!(
                            "the Engine refused batch request {}: {}",
                            b.request_id,
                            crate::audit::clean(
                                &b.error.map(|e| e.message).unwrap_or_default(),
                                200
                            )
                        ))
                    };
                    remote.deliver(b.request_id, answer);
                }
                true
            }
            Command::DatasetInfoResponse(info) => self.dataset_info(info).await,
            Command::Pause(true) => self.steer("pause").await,
            Command::Resume(true) => self.steer("resume").await,
            Command::Stop(true) => self.steer("stop").await,
            Command::RequestCheckpoint(true) => self.checkpoint().await,
            Command::UpdateParams(p) => self.retune(p).await,
            Command::NewJobConfig(config) => {
                if matches!(self.phase, Phase::AwaitInfo { .. }) || self.running().await {
                    return self
                        .send(log(
                            &self.job,
                            WARNING,
                            format!(
                                "new_job_config ignored: job {} has not ended (stop it first)",
                                self.job
                            ),
                        ))
                        .await;
                }
                let id = config.job_id.clone();
                let uri = config.dataset_uri.clone();
                let claims = self.claims.clone();
                match self
                    .p2p
                    .accept(&claims, &self.peer, &id, config, Vec::new(), &uri)
                    .await
                {
                    Ok(_) => {
                        self.detach();
                        self.start(&id).await;
                        true
                    }
                    Err(s) => {
                        self.send(update(
                            &id,
                            Update::Error(TrainingError {
                                error_code: format!("{:?}", s.code()),
                                error_message: s.message().to_owned(),
                                stack_trace: String::new(),
                                epoch_at_error: 0,
                                recoverable: true,
                            }),
                        ))
                        .await
                    }
                }
            }
            Command::ReservationEnd(true) => {
                self.end_reservation().await;
                false
            }
            _ => true,
        }
    }

    /// Whether the current job is queued or running in the executor.
    async fn running(&self) -> bool {
        if !matches!(self.phase, Phase::Running) {
            return false;
        }
        self.view(&self.job)
            .await
            .is_some_and(|v| !v.state.is_terminal())
    }

    fn detach(&mut self) {
        if let Some(remote) = self.remote.take() {
            self.p2p.node.jobs.detach_remote(&self.job, "the job ended");
            remote.close("the job ended");
        }
        self.asks = None;
    }

    /// Pause, resume or stop the current job, without blocking the stream (a stopping job may
    /// still need batches).
    async fn steer(&mut self, what: &'static str) -> bool {
        if !matches!(self.phase, Phase::Running) {
            if what == "stop" && matches!(self.phase, Phase::AwaitInfo { .. }) {
                return self
                    .refuse("stopped by the Engine before it started", "STOPPED")
                    .await;
            }
            return self
                .send(log(
                    &self.job,
                    WARNING,
                    format!("{what}: no job is running"),
                ))
                .await;
        }
        let jobs = self.p2p.node.jobs.clone();
        let id = self.job.clone();
        let out = self.out.clone();
        self.p2p
            .node
            .audit("p2p_command", &id, &format!("{what} from {}", self.peer));
        tokio::task::spawn_blocking(move || {
            let result = match what {
                "pause" => jobs.pause(&id),
                "resume" => jobs.resume(&id),
                _ => jobs.cancel(&id),
            };
            let message = match result {
                Ok(v) => format!("{what}: job {id} is {}", v.state),
                Err(e) => format!("{what}: {e}"),
            };
            let _ = out.blocking_send(Ok(log(&id, INFO, message)));
        });
        true
    }

    /// New learning rate and/or batch size for the running job, from its next epoch on.
    async fn retune(&mut self, p: UpdateHyperparameters) -> bool {
        let retune = Retune {
            learning_rate: (p.learning_rate != 0.0).then_some(p.learning_rate),
            batch_size: match p.batch_size {
                0 => None,
                n => Some(u32::try_from(n).unwrap_or(0)),
            },
        };
        let mut notes = Vec::new();
        if !p.other_params.is_empty() {
            let keys: Vec<String> = p
                .other_params
                .keys()
                .take(16)
                .map(|k| crate::audit::clean(k, 32))
                .collect();
            notes.push(format!(
                "other_params {keys:?} are not adjustable and were ignored"
            ));
        }
        let message = if retune == Retune::default() {
            "update_params changed nothing (learning_rate and batch_size are 0)".to_owned()
        } else if !matches!(self.phase, Phase::Running) {
            "update_params: no job is running".to_owned()
        } else {
            let jobs = self.p2p.node.jobs.clone();
            let id = self.job.clone();
            self.p2p.node.audit(
                "p2p_command",
                &id,
                &format!("update_params {retune:?} from {}", self.peer),
            );
            match tokio::task::spawn_blocking(move || jobs.retune(&id, retune)).await {
                Ok(Ok(_)) => format!(
                    "update_params accepted: {retune:?} applies from the next epoch (the job checkpoints at the epoch's end and continues with them)"
                ),
                Ok(Err(e)) => format!("update_params refused: {e}"),
                Err(e) => format!("update_params failed: {e}"),
            }
        };
        notes.insert(0, message);
        self.send(log(&self.job, INFO, notes.join("; "))).await
    }

    /// Sends the weights of the job's latest durable checkpoint.
    async fn checkpoint(&mut self) -> bool {
        let jobs = self.p2p.node.jobs.clone();
        let id = self.job.clone();
        let limit = self
            .p2p
            .node
            .config
            .grpc
            .max_message_bytes
            .saturating_sub(64 << 10);
        let found = tokio::task::spawn_blocking(move || -> Result<(JobView, Vec<u8>), String> {
            let view = jobs.get(&id).map_err(|e| e.to_string())?;
            let path = jobs
                .checkpoint_path(&id)
                .map_err(|e| e.to_string())?
                .ok_or("no checkpoint yet (the first is written at the end of epoch 1)")?;
            let bytes = std::fs::read(&path).map_err(|e| format!("reading the checkpoint: {e}"))?;
            let file = TensorFile::decode(&bytes).map_err(|e| e.message)?;
            Ok((view, file.weights_only().encode()))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match found {
            Ok((_, bytes)) if bytes.len() > limit => {
                self.send(log(
                    &self.job,
                    WARNING,
                    format!(
                        "the checkpoint's weights are {} bytes, over the {limit}-byte message limit; download them with DownloadWeights after the job",
                        bytes.len()
                    ),
                ))
                .await
            }
            Ok((view, bytes)) => {
                let c = TrainingCheckpoint {
                    epoch: view.checkpoint_epoch.unwrap_or(view.epoch) as i32,
                    weights_size: bytes.len() as i64,
                    checkpoint_hash: hex(&Sha256::digest(&bytes)),
                    weights_data: bytes,
                    compression_type: "none".into(),
                    metrics_at_checkpoint: view.metrics.into_iter().collect(),
                };
                self.send(update(&self.job, Update::Checkpoint(c))).await
            }
            Err(why) => self.send(log(&self.job, WARNING, why)).await,
        }
    }

    /// Relays one executor event of the current job.
    async fn relay(&mut self, event: JobUpdate) -> bool {
        match event.kind {
            "progress" => {
                let epoch_end = event.step == Some(0);
                if !epoch_end
                    && self
                        .last_progress
                        .is_some_and(|t| t.elapsed() < PROGRESS_EVERY)
                {
                    return true;
                }
                self.last_progress = Some(Instant::now());
                let p = self.progress(&event);
                self.send(update(&self.job, Update::Progress(p))).await
            }
            "checkpoint" => self.send(log(&self.job, INFO, event.detail.clone())).await,
            _ if event.is_end() => {
                if !matches!(self.phase, Phase::Running) {
                    // Already ended (the periodic check saw it first).
                    return true;
                }
                let view = self.view(&self.job).await;
                match view {
                    Some(view) => self.finish(view).await,
                    None => true,
                }
            }
            _ => {
                let state = event.state.map_or("?", JobState::as_str);
                self.send(log(&self.job, INFO, format!("{state}: {}", event.detail)))
                    .await
            }
        }
    }

    fn progress(&self, e: &JobUpdate) -> TrainingProgress {
        let total_epochs = self.total_epochs;
        let done = e.epoch.unwrap_or(0);
        let step = e.step.unwrap_or(0);
        let total_steps = e.total_steps.unwrap_or(0);
        let current = if step > 0 { done + 1 } else { done.max(1) };
        let fraction = if total_epochs > 0 && total_steps > 0 {
            (f64::from(done) * total_steps as f64 + step as f64)
                / (f64::from(total_epochs) * total_steps as f64)
        } else {
            0.0
        };
        let metrics = e
            .metrics
            .as_ref()
            .and_then(|m| m.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
                    .collect()
            })
            .unwrap_or_default();
        let system = self.p2p.node.metrics.system();
        let gpu = system.as_ref().and_then(|s| s.gpus.first().cloned());
        TrainingProgress {
            current_epoch: current as i32,
            total_epochs: total_epochs as i32,
            current_batch: step as i32,
            total_batches: total_steps as i32,
            progress_percentage: (fraction * 100.0).clamp(0.0, 100.0),
            metrics,
            gpu_usage: gpu
                .as_ref()
                .and_then(|g| g.utilization_percent)
                .map_or(0.0, f64::from),
            cpu_usage: system.as_ref().map_or(0.0, |s| f64::from(s.cpu_percent)),
            memory_usage: system.as_ref().map_or(0.0, |s| {
                s.ram_used_bytes as f64 * 100.0 / (s.ram_total_bytes.max(1) as f64)
            }),
            gpu_memory_used: gpu
                .as_ref()
                .and_then(|g| g.memory_used_bytes)
                .map_or(0, |b| b as i64),
            gpu_memory_total: gpu
                .as_ref()
                .and_then(|g| g.memory_total_bytes)
                .map_or(0, |b| b as i64),
            estimated_time_remaining: e.eta_seconds.map_or(0, |s| s.round() as i64),
            elapsed_time: self.started.map_or(0, |t| t.elapsed().as_secs() as i64),
            samples_per_second: e.samples_per_second.unwrap_or(0.0),
        }
    }

    /// Sends the end of job `view`: `complete` (with the weights' hash) or `error`.
    async fn finish(&mut self, view: JobView) -> bool {
        self.detach();
        self.phase = Phase::Idle;
        let node_id = self.p2p.node.central.node_id();
        let u = match view.state {
            JobState::Succeeded | JobState::Cancelled if view.weights_sha256.is_some() => {
                Update::Complete(TrainingComplete {
                    success: view.state == JobState::Succeeded,
                    result_hash: view.weights_sha256.clone().unwrap_or_default(),
                    final_metrics: view.metrics.clone().into_iter().collect(),
                    total_training_time: view.run_seconds.round() as i64,
                    total_epochs_completed: i64::from(view.epoch),
                    weights_location: format!(
                        "node://{node_id}/jobs/{}/weights.safetensors",
                        view.id
                    ),
                    final_weights_size: view.weights_bytes.unwrap_or(0) as i64,
                    proof_of_compute: String::new(),
                })
            }
            _ => Update::Error(TrainingError {
                error_code: view.state.as_str().to_uppercase(),
                error_message: view
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("the job ended {}", view.state)),
                stack_trace: String::new(),
                epoch_at_error: view.epoch as i32,
                recoverable: false,
            }),
        };
        self.send(update(&view.id, u)).await
    }

    /// The Engine ended the reservation: stop what runs, report, close.
    async fn end_reservation(&mut self) {
        if self.running().await {
            let jobs = self.p2p.node.jobs.clone();
            let id = self.job.clone();
            let _ = tokio::task::spawn_blocking(move || jobs.cancel(&id)).await;
        }
        self.detach();
        self.p2p.end_reservation(&self.claims, &self.peer).await;
        let _ = self
            .send(log(
                &self.job,
                INFO,
                "reservation ended; closing the stream",
            ))
            .await;
    }
}
