//! `StreamTrainingMetrics`: one Engine's training stream. The node asks for the Engine's
//! dataset (`dataset_info_request`, retried because the Engine registers a new job's data
//! late), pulls batches (`batch_request`, several in flight), relays the job's progress, logs
//! and checkpoints, ends each job with `complete` or `error`, obeys the Engine's commands and
//! keeps the stream open for the reservation's next job until `reservation_end`.
//!
//! This module holds the driver and its loop; [`dataset`] learns the Engine's dataset and
//! queues the job, [`commands`] obeys the Engine's commands, [`relay`] turns the executor's
//! events into progress, `complete` and `error`.

mod commands;
mod dataset;
mod relay;

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

use super::token::Claims;
use super::P2p;
use crate::jobs::dataset::{MAX_CLASSES, MAX_SAMPLES, MAX_SAMPLE_LEN};
use crate::jobs::dir::hex;
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

/// An `error` update: the job (or the request for one) failed.
fn failure(
    code: impl Into<String>,
    message: impl Into<String>,
    epoch: i32,
    recoverable: bool,
) -> Update {
    Update::Error(TrainingError {
        error_code: code.into(),
        error_message: message.into(),
        stack_trace: String::new(),
        epoch_at_error: epoch,
        recoverable,
    })
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
                    .send(update(&me, failure("NOT_FOUND", why, 0, true)))
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
}
