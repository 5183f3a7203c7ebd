//! The host's side of one running job, handed to the training plugin: it serves batches from
//! the loaded dataset (shuffled per epoch with the job's seed), records progress (SQLite,
//! `metrics.jsonl`, subscribers; throttled), stores checkpoints durably and writes the
//! weights, and turns the caller's pause/cancel into the plugin's directives.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cyxwiz_sdk::training::{
    derive_seed, permutation, Batch, Checkpoint, CheckpointReason, DataSplit, Directive,
    TensorFile, TrainingHost, TrainingProgress,
};
use cyxwiz_sdk::{Error as SdkError, Result as SdkResult};

use super::dataset::Dataset;
use super::dir::{sha256_file, write_atomic, JobDir};
use super::executor::Jobs;
use super::remote::RemoteData;
use super::state::JobState;
use crate::store::jobs::JobProgress;

/// How often progress is written while a job runs (epoch ends are always written).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);
/// Validation batches hold at least this many samples.
pub const MIN_VALIDATION_BATCH: usize = 256;

/// What a caller wants of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// Keep training.
    Run,
    /// Pause at the next step.
    Pause,
    /// Stop, keeping partial weights; the job ends `cancelled`.
    Cancel,
    /// Stop because the node is stopping; the job resumes after a restart.
    Shutdown,
    /// Stop at this epoch boundary and continue at once with new hyperparameters
    /// ([`Retune`]).
    Restart,
}

/// New hyperparameters for a running job, applied at its next epoch boundary (the job
/// checkpoints, then continues from that checkpoint with them).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Retune {
    /// The new learning rate.
    pub learning_rate: Option<f64>,
    /// The new batch size.
    pub batch_size: Option<u32>,
}

/// The control block of a running job, shared with the callers.
#[derive(Debug)]
pub struct Control {
    wanted: Mutex<Wanted>,
    changed: Condvar,
    /// Set when the host gave up waiting for a cancel and ended the job itself: the worker
    /// must not touch the job's state when the plugin finally returns.
    pub abandoned: std::sync::atomic::AtomicBool,
    done: Mutex<bool>,
    done_changed: Condvar,
    /// Hyperparameters to apply at the next epoch boundary.
    pub retune: Mutex<Option<Retune>>,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            wanted: Mutex::new(Wanted::Run),
            changed: Condvar::new(),
            abandoned: Default::default(),
            done: Mutex::new(false),
            done_changed: Condvar::new(),
            retune: Mutex::new(None),
        }
    }
}

impl Control {
    /// What is wanted now.
    pub fn wanted(&self) -> Wanted {
        *self.wanted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for `w` (a cancel or shutdown is never downgraded back to run or pause).
    pub fn want(&self, w: Wanted) {
        let mut cur = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*cur, Wanted::Cancel | Wanted::Shutdown)
            || (*cur == Wanted::Restart && w != Wanted::Cancel && w != Wanted::Shutdown)
        {
            return;
        }
        *cur = w;
        self.changed.notify_all();
    }

    /// Blocks while paused; the wanted state that ended the wait.
    fn wait_while_paused(&self) -> Wanted {
        let mut cur = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        while *cur == Wanted::Pause {
            cur = self.changed.wait(cur).unwrap_or_else(|p| p.into_inner());
        }
        *cur
    }

    /// Marks the worker finished.
    pub fn finish(&self) {
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.done_changed.notify_all();
    }

    /// Waits up to `timeout` for the worker to finish; true if it did.
    pub fn wait_done(&self, timeout: Duration) -> bool {
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let (done, _) = self
            .done_changed
            .wait_timeout_while(done, timeout, |d| !*d)
            .unwrap_or_else(|p| p.into_inner());
        *done
    }
}

/// The loaded data of a job, split.
#[derive(Debug)]
pub struct Data {
    /// Training samples.
    pub train: Dataset,
    /// Validation samples.
    pub validation: Option<Dataset>,
}

impl Data {
    /// Training batches per epoch.
    pub fn train_batches(&self, batch_size: usize) -> u64 {
        self.train.len().div_ceil(batch_size) as u64
    }

    /// Validation batch size and count.
    pub fn validation_batches(&self, batch_size: usize) -> (usize, u64) {
        let size = batch_size.max(MIN_VALIDATION_BATCH);
        let n = self
            .validation
            .as_ref()
            .map_or(0, |v| v.len().div_ceil(size));
        (size, n as u64)
    }
}

/// Where a running job's samples come from.
#[derive(Debug)]
pub enum Samples {
    /// Loaded on this node.
    Local(Data),
    /// Kept by the Engine and pulled over the P2P stream.
    Remote(Arc<RemoteData>),
}

impl Samples {
    /// Training samples.
    pub fn train_len(&self) -> usize {
        match self {
            Samples::Local(d) => d.train.len(),
            Samples::Remote(r) => r.shape().train,
        }
    }

    /// Validation samples.
    fn validation_len(&self) -> usize {
        match self {
            Samples::Local(d) => d.validation.as_ref().map_or(0, Dataset::len),
            Samples::Remote(r) => r.shape().validation,
        }
    }

    /// Training batches per epoch.
    pub fn train_batches(&self, batch_size: usize) -> u64 {
        self.train_len().div_ceil(batch_size) as u64
    }

    /// Validation batch size and count.
    pub fn validation_batches(&self, batch_size: usize) -> (usize, u64) {
        let size = batch_size.max(MIN_VALIDATION_BATCH);
        (size, self.validation_len().div_ceil(size) as u64)
    }
}

fn gather(set: &Dataset, indices: impl Iterator<Item = usize>) -> Batch {
    let mut inputs = Vec::new();
    let mut labels = Vec::new();
    for i in indices {
        inputs.extend_from_slice(set.sample(i));
        labels.push(i64::from(set.labels()[i]));
    }
    let mut shape = vec![labels.len()];
    shape.extend_from_slice(set.shape());
    Batch {
        inputs,
        shape,
        labels,
    }
}

/// The host's side of one job run.
pub struct Session {
    pub(super) jobs: Arc<Jobs>,
    pub(super) id: String,
    pub(super) dir: JobDir,
    pub(super) control: Arc<Control>,
    pub(super) data: Samples,
    pub(super) seed: u64,
    pub(super) batch_size: usize,
    pub(super) total_epochs: u32,
    /// Samples processed before this run (a resumed job), for the rate.
    pub(super) samples_at_start: u64,
    pub(super) started: Instant,
    pub(super) run_seconds_before: f64,
    pub(super) last_write: Option<Instant>,
    /// The epoch whose permutation is cached, and the permutation.
    pub(super) order: Option<(u32, Vec<usize>)>,
    /// The latest metrics the plugin reported.
    pub(super) metrics: BTreeMap<String, f64>,
    /// The last checkpoint file written in this run.
    pub(super) last_checkpoint: Option<std::path::PathBuf>,
    /// Remote batches requested ahead of training.
    pub(super) prefetch: usize,
}

impl Session {
    fn run_seconds(&self) -> f64 {
        self.run_seconds_before + self.started.elapsed().as_secs_f64()
    }

    fn record(&mut self, p: &TrainingProgress) {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = p.samples.saturating_sub(self.samples_at_start) as f64 / elapsed;
        for m in &p.metrics {
            self.metrics.insert(m.name.clone(), m.value);
        }
        let epochs_done = if p.epoch_end {
            p.epoch
        } else {
            p.epoch.saturating_sub(1)
        };
        let progress = JobProgress {
            epoch: epochs_done,
            step: if p.epoch_end { 0 } else { p.step },
            total_steps: p.total_steps,
            samples: p.samples,
            metrics: serde_json::to_string(&self.metrics).unwrap_or_else(|_| "{}".into()),
            run_seconds: self.run_seconds(),
        };
        let total_samples = u64::from(self.total_epochs) * self.data.train_len() as u64;
        let eta = (rate > 0.0)
            .then(|| total_samples.saturating_sub(p.samples) as f64 / rate)
            .filter(|e| e.is_finite());
        self.jobs
            .progress(&self.id, &self.dir, progress, rate, eta, p.epoch_end);
    }
}

impl TrainingHost for Session {
    fn batch(&mut self, split: DataSplit, epoch: u32, index: u64) -> SdkResult<Batch> {
        let index = usize::try_from(index)
            .map_err(|_| SdkError::invalid_input(format!("batch index {index} is too large")))?;
        if split == DataSplit::TRAIN {
            if epoch >= self.total_epochs {
                return Err(SdkError::invalid_input(format!(
                    "epoch {epoch} is past the job's {} epochs",
                    self.total_epochs
                )));
            }
            let n = self.data.train_len();
            let batches = n.div_ceil(self.batch_size);
            if index >= batches {
                return Err(SdkError::invalid_input(format!(
                    "training batch {index} is past the end ({batches} batches)"
                )));
            }
            if self.order.as_ref().map(|(e, _)| *e) != Some(epoch) {
                let seed = derive_seed(&[self.seed, 3, u64::from(epoch)]);
                self.order = Some((epoch, permutation(n, seed)));
            }
            let order = self.order.as_ref().map(|(_, o)| o.as_slice());
            let order = order.unwrap_or_default();
            let range =
                |i: usize| order[i * self.batch_size..((i + 1) * self.batch_size).min(n)].to_vec();
            match &self.data {
                Samples::Local(d) => Ok(gather(&d.train, range(index).into_iter())),
                Samples::Remote(r) => {
                    for ahead in index..(index + self.prefetch).min(batches) {
                        r.ask(split, epoch, ahead as u64, &range(ahead));
                    }
                    r.take(split, epoch, index as u64)
                        .map_err(SdkError::runtime)
                }
            }
        } else {
            let (size, count) = self.data.validation_batches(self.batch_size);
            if count == 0 {
                return Err(SdkError::invalid_input("this job has no validation split"));
            }
            if index as u64 >= count {
                return Err(SdkError::invalid_input(format!(
                    "validation batch {index} is past the end ({count} batches)"
                )));
            }
            let n = self.data.validation_len();
            let range = |i: usize| (i * size)..((i + 1) * size).min(n);
            match &self.data {
                Samples::Local(d) => match &d.validation {
                    Some(set) => Ok(gather(set, range(index))),
                    None => Err(SdkError::invalid_input("this job has no validation split")),
                },
                Samples::Remote(r) => {
                    for ahead in index..(index + self.prefetch).min(count as usize) {
                        r.ask(
                            split,
                            epoch,
                            ahead as u64,
                            &range(ahead).collect::<Vec<_>>(),
                        );
                    }
                    r.take(split, epoch, index as u64)
                        .map_err(SdkError::runtime)
                }
            }
        }
    }

    fn report(&mut self, progress: &TrainingProgress) -> Directive {
        let due = progress.epoch_end
            || self
                .last_write
                .is_none_or(|t| t.elapsed() >= PROGRESS_INTERVAL);
        if due {
            self.last_write = Some(Instant::now());
            self.record(progress);
        }
        if progress.epoch_end
            && progress.epoch < self.total_epochs
            && self
                .control
                .retune
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
        {
            self.control.want(Wanted::Restart);
        }
        match self.control.wanted() {
            Wanted::Run => Directive::CONTINUE,
            Wanted::Pause => Directive::PAUSE,
            Wanted::Cancel | Wanted::Shutdown | Wanted::Restart => Directive::STOP,
        }
    }

    fn checkpoint(&mut self, c: Checkpoint) -> SdkResult<()> {
        let io = |what: &str, e: std::io::Error| {
            SdkError::runtime(format!("storing the checkpoint ({what}): {e}"))
        };
        let path = self.dir.checkpoint(c.steps_done);
        write_atomic(&path, &c.data).map_err(|e| io("write", e))?;
        let reason = match c.reason {
            CheckpointReason::EPOCH => "end of epoch",
            CheckpointReason::PAUSE => "pause",
            CheckpointReason::STOPPED => "stopped",
            CheckpointReason::FINAL => "final",
            _ => "requested",
        };
        let detail = format!(
            "checkpoint ({reason}) after {} epochs, {} steps, {} bytes",
            c.epochs_done,
            c.steps_done,
            c.data.len()
        );
        self.jobs
            .checkpointed(
                &self.id,
                &self.dir,
                &path,
                c.epochs_done,
                c.steps_done,
                &detail,
            )
            .map_err(|e| SdkError::runtime(e.to_string()))?;
        self.last_checkpoint = Some(path);
        self.dir.prune_checkpoints();
        if matches!(
            c.reason,
            CheckpointReason::FINAL | CheckpointReason::STOPPED
        ) {
            self.jobs
                .write_weights(&self.id, &self.dir, &c.data)
                .map_err(|e| SdkError::runtime(e.to_string()))?;
        }
        Ok(())
    }

    fn wait_while_paused(&mut self) -> Directive {
        if self.control.wanted() != Wanted::Pause {
            return self.directive();
        }
        let paused_at = Instant::now();
        let _ = self
            .jobs
            .transition(&self.id, &self.dir, JobState::Paused, "paused", None);
        let wanted = self.control.wait_while_paused();
        // Time paused is not training time.
        self.started += paused_at.elapsed();
        if wanted == Wanted::Run {
            let _ = self
                .jobs
                .transition(&self.id, &self.dir, JobState::Running, "resumed", None);
        }
        self.directive()
    }
}

impl Session {
    fn directive(&self) -> Directive {
        match self.control.wanted() {
            Wanted::Run => Directive::CONTINUE,
            Wanted::Pause => Directive::PAUSE,
            Wanted::Cancel | Wanted::Shutdown | Wanted::Restart => Directive::STOP,
        }
    }
}

/// Writes `weights.safetensors` from checkpoint bytes (the model tensors and the model spec,
/// without training state) and returns its sha256 and size.
pub fn weights_from_checkpoint(dir: &JobDir, checkpoint: &[u8]) -> Result<(String, u64), String> {
    let file = TensorFile::decode(checkpoint).map_err(|e| e.message)?;
    let bytes = file.weights_only().encode();
    write_atomic(&dir.weights(), &bytes).map_err(|e| format!("writing weights: {e}"))?;
    sha256_file(&dir.weights()).map_err(|e| format!("hashing weights: {e}"))
}
