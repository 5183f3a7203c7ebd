//! Jobs as callers see them: [`JobView`] (the JSON of `jobs show --json` and
//! `GET /v1/jobs/{id}`) and [`JobUpdate`] (one event of the live stream: a state change,
//! progress or a checkpoint).

use std::collections::BTreeMap;

use serde::Serialize;

use super::request::JobConfig;
use super::state::JobState;
use crate::store::jobs::{JobProgress, JobRow};

/// Live figures of a running job, kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Live {
    /// Training samples per second in this run.
    pub samples_per_second: f64,
    /// Seconds left at that rate.
    pub eta_seconds: Option<f64>,
}

/// A job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    /// The job id (a UUID).
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// `local` or `network`.
    pub origin: String,
    /// The P2P reservation (network jobs from an Engine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<String>,
    /// The sender's address (the Engine or the central server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The training plugin.
    pub backend: String,
    /// The dataset URI, or `inline`.
    pub dataset: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Runs so far (more than 1 after resumes).
    pub attempt: u32,
    /// Epochs completed.
    pub epoch: u32,
    /// Epochs in all.
    pub total_epochs: u32,
    /// Batches done in the current epoch.
    pub step: u64,
    /// Batches per epoch (0 until known).
    pub total_steps: u64,
    /// Done share, 0 to 1.
    pub progress: f64,
    /// Training samples processed.
    pub samples: u64,
    /// Samples per second while running.
    pub samples_per_second: Option<f64>,
    /// Seconds left while running.
    pub eta_seconds: Option<f64>,
    /// The latest metrics (`loss`, `accuracy`, `val_loss`, `val_accuracy`).
    pub metrics: BTreeMap<String, f64>,
    /// Epochs completed at the latest checkpoint.
    pub checkpoint_epoch: Option<u32>,
    /// sha256 of `weights.safetensors` (the job's result hash).
    pub weights_sha256: Option<String>,
    /// Its size in bytes.
    pub weights_bytes: Option<u64>,
    /// Why it failed or how it was cancelled.
    pub error: Option<String>,
    /// Seconds spent training.
    pub run_seconds: f64,
    /// Submitted at (RFC 3339).
    pub created_at: String,
    /// First started at.
    pub started_at: Option<String>,
    /// Ended at.
    pub finished_at: Option<String>,
    /// Epochs, batch size, learning rate, seed, validation split.
    pub config: serde_json::Value,
    /// The job's directory (weights, logs, checkpoints).
    pub dir: String,
}

impl JobView {
    /// The view of a row with its live figures.
    pub fn from_row(row: JobRow, live: Option<Live>) -> Self {
        let config: Option<JobConfig> = serde_json::from_str(&row.config).ok();
        let state = JobState::parse(&row.state).unwrap_or(JobState::Failed);
        let progress = if state == JobState::Succeeded {
            1.0
        } else if row.total_epochs == 0 {
            0.0
        } else {
            let within = if row.total_steps > 0 {
                row.step as f64 / row.total_steps as f64
            } else {
                0.0
            };
            ((f64::from(row.epoch) + within) / f64::from(row.total_epochs)).clamp(0.0, 1.0)
        };
        let running = matches!(state, JobState::Running);
        let live = live.filter(|_| running);
        Self {
            state,
            origin: row.origin,
            reservation: row.reservation,
            peer: row.peer,
            backend: row.backend,
            dataset: match config.as_ref().map(|c| &c.dataset) {
                Some(super::request::DatasetRef::Uri(u)) => u.clone(),
                Some(super::request::DatasetRef::Remote) => super::request::REMOTE_ENGINE.into(),
                _ => "inline".into(),
            },
            device: config
                .as_ref()
                .map_or_else(String::new, |c| c.device.clone()),
            attempt: row.attempt,
            epoch: row.epoch,
            total_epochs: row.total_epochs,
            step: row.step,
            total_steps: row.total_steps,
            progress,
            samples: row.samples,
            samples_per_second: live.map(|l| l.samples_per_second),
            eta_seconds: live.and_then(|l| l.eta_seconds),
            metrics: serde_json::from_str(&row.metrics).unwrap_or_default(),
            checkpoint_epoch: row.checkpoint_epoch,
            weights_sha256: row.weights_sha256,
            weights_bytes: row.weights_bytes,
            error: row.error,
            run_seconds: row.run_seconds,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            config: config.map_or(serde_json::Value::Null, |c| {
                serde_json::json!({
                    "epochs": c.epochs,
                    "batch_size": c.batch_size,
                    "learning_rate": c.learning_rate,
                    "validation_split": c.validation_split,
                    "seed": c.seed,
                    "label_column": c.label_column,
                })
            }),
            dir: row.dir,
            id: row.id,
        }
    }
}

/// One event of the live stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobUpdate {
    /// The job.
    pub job_id: String,
    /// `state`, `progress` or `checkpoint`.
    pub kind: &'static str,
    /// The new state (state events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// Epochs completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
    /// Batches done in the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// Batches per epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<u64>,
    /// Samples processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// Metrics now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
    /// Samples per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_per_second: Option<f64>,
    /// Seconds left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    /// Free text.
    pub detail: String,
}

impl JobUpdate {
    fn empty(id: &str, kind: &'static str, detail: &str) -> Self {
        Self {
            job_id: id.to_owned(),
            kind,
            state: None,
            epoch: None,
            step: None,
            total_steps: None,
            samples: None,
            metrics: None,
            samples_per_second: None,
            eta_seconds: None,
            detail: detail.to_owned(),
        }
    }

    /// A state change.
    pub fn state(id: &str, state: JobState, detail: &str) -> Self {
        Self {
            state: Some(state),
            ..Self::empty(id, "state", detail)
        }
    }

    /// Progress.
    pub fn progress(id: &str, p: &JobProgress, metrics: serde_json::Value, live: Live) -> Self {
        Self {
            epoch: Some(p.epoch),
            step: Some(p.step),
            total_steps: Some(p.total_steps),
            samples: Some(p.samples),
            metrics: Some(metrics),
            samples_per_second: Some(live.samples_per_second),
            eta_seconds: live.eta_seconds,
            ..Self::empty(id, "progress", "")
        }
    }

    /// A durable checkpoint.
    pub fn checkpoint(id: &str, epoch: u32, steps: u64, detail: &str) -> Self {
        Self {
            epoch: Some(epoch),
            step: Some(steps),
            ..Self::empty(id, "checkpoint", detail)
        }
    }

    /// True for a state event that ends the job.
    pub fn is_end(&self) -> bool {
        self.state.is_some_and(JobState::is_terminal)
    }
}
