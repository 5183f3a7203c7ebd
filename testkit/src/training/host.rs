//! The kit's in-memory [`TrainingHost`]: serves a [`Dataset`] in seeded, shuffled batches,
//! answers progress reports from a [`Script`] (stop or pause after a step, stop at an epoch
//! end, what to answer while paused), can serve broken batches or fail on purpose, and
//! records everything the backend did in order, for the checks to read.

use super::data::{Dataset, Split, BATCH};
use crate::watchdog;
use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::training::{
    derive_seed, permutation, Batch, Checkpoint, CheckpointReason, DataSplit, Directive,
    TrainingHost, TrainingJob, TrainingOutcome, TrainingProgress,
};
use cyxwiz_sdk::Error;
use std::{sync::Arc, time::Duration};

/// What the host answers and serves.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Script {
    /// Answer STOP to the report of this training step (1-based, over the whole job).
    pub stop_after: Option<u64>,
    /// Answer PAUSE to the report of this training step.
    pub pause_after: Option<u64>,
    /// Answer STOP to the report that closes this epoch (1-based).
    pub stop_at_epoch_end: Option<u32>,
    /// What `wait_while_paused` answers (CONTINUE unless set).
    pub after_pause: Option<Directive>,
    /// Serve training batches of the wrong sample shape.
    pub wrong_shape: bool,
    /// Serve a label outside the classes.
    pub bad_label: bool,
    /// Fail every batch request with an error.
    pub fail_batches: bool,
    /// Fail every checkpoint with an error.
    pub fail_checkpoints: bool,
}

/// One thing the backend did, or the host answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Batch(DataSplit, u32, u64),
    Report { step_report: bool },
    Answered(Directive),
    Checkpoint(CheckpointReason),
    Wait,
}

/// The host's side of one job.
pub(crate) struct KitHost {
    data: Arc<Dataset>,
    seed: u64,
    script: Script,
    steps: u64,
    pub events: Vec<Event>,
    pub reports: Vec<TrainingProgress>,
    pub checkpoints: Vec<Checkpoint>,
}

/// What the host's batch errors say, so checks can find them in the job's error.
pub(crate) const HOST_FAILURE: &str = "the kit's host refuses this batch on purpose";

impl KitHost {
    pub fn new(data: Arc<Dataset>, seed: u64, script: Script) -> Self {
        Self {
            data,
            seed,
            script,
            steps: 0,
            events: Vec::new(),
            reports: Vec::new(),
            checkpoints: Vec::new(),
        }
    }

    /// The training loss of each step, recovered from the running averages the step reports
    /// carry (every batch holds [`BATCH`] samples): `(global step, loss)`. `before` is the
    /// running average the first reported epoch started from (a resumed job's).
    pub fn step_losses(&self, before: Option<f64>) -> Vec<(u64, f64)> {
        let mut out = Vec::new();
        let mut previous = before;
        let per_epoch = self.reports.first().map_or(0, |r| r.total_steps);
        for r in self.reports.iter().filter(|r| !r.epoch_end) {
            let Some(avg) = r.metric("loss") else {
                continue;
            };
            let j = r.step as f64;
            let loss = if r.step == 1 {
                avg
            } else {
                match previous {
                    Some(p) => j * avg - (j - 1.0) * p,
                    None => f64::NAN,
                }
            };
            let global = u64::from(r.epoch - 1) * per_epoch + r.step;
            out.push((global, loss));
            previous = Some(avg);
        }
        out
    }

    /// The last checkpoint written for `reason`.
    pub fn last(&self, reason: CheckpointReason) -> Option<&Checkpoint> {
        self.checkpoints.iter().rev().find(|c| c.reason == reason)
    }

    fn split(&self, split: DataSplit) -> &Split {
        if split == DataSplit::VALIDATION {
            &self.data.validation
        } else {
            &self.data.train
        }
    }
}

impl TrainingHost for KitHost {
    fn batch(&mut self, split: DataSplit, epoch: u32, index: u64) -> cyxwiz_sdk::Result<Batch> {
        self.events.push(Event::Batch(split, epoch, index));
        if self.script.fail_batches {
            return Err(Error::invalid_input(HOST_FAILURE));
        }
        let set = self.split(split);
        let n = set.len();
        let start = usize::try_from(index)
            .unwrap_or(usize::MAX)
            .saturating_mul(BATCH);
        if start >= n {
            return Err(Error::invalid_input(format!(
                "batch {index} is past the end of the {n}-sample split"
            )));
        }
        let end = (start + BATCH).min(n);
        let order: Vec<usize> = if split == DataSplit::TRAIN {
            permutation(n, derive_seed(&[self.seed, u64::from(epoch)]))
        } else {
            (0..n).collect()
        };
        let width: usize = self.data.sample.iter().product();
        let mut inputs = Vec::with_capacity((end - start) * width);
        let mut labels = Vec::with_capacity(end - start);
        for &i in &order[start..end] {
            inputs.extend_from_slice(&set.inputs[i * width..(i + 1) * width]);
            labels.push(set.labels[i]);
        }
        let mut shape = vec![end - start];
        shape.extend_from_slice(&self.data.sample);
        if self.script.wrong_shape && split == DataSplit::TRAIN {
            // One more feature per sample, shape and data consistent.
            let mut wider = Vec::with_capacity(inputs.len() + labels.len());
            for row in inputs.chunks(width) {
                wider.extend_from_slice(row);
                wider.push(0.0);
            }
            inputs = wider;
            shape = vec![end - start, width + 1];
        }
        if self.script.bad_label {
            labels[0] = self.data.classes as i64;
        }
        Ok(Batch {
            inputs,
            shape,
            labels,
        })
    }

    fn report(&mut self, progress: &TrainingProgress) -> Directive {
        let step_report = !progress.epoch_end;
        self.events.push(Event::Report { step_report });
        self.reports.push(progress.clone());
        if step_report {
            self.steps += 1;
        }
        let s = self.script;
        let answer = if step_report && s.stop_after == Some(self.steps) {
            Directive::STOP
        } else if step_report && s.pause_after == Some(self.steps) {
            Directive::PAUSE
        } else if !step_report && s.stop_at_epoch_end == Some(progress.epoch) {
            Directive::STOP
        } else {
            Directive::CONTINUE
        };
        if answer != Directive::CONTINUE {
            self.events.push(Event::Answered(answer));
        }
        answer
    }

    fn checkpoint(&mut self, checkpoint: Checkpoint) -> cyxwiz_sdk::Result<()> {
        self.events.push(Event::Checkpoint(checkpoint.reason));
        if self.script.fail_checkpoints {
            return Err(Error::runtime(
                "the kit's host cannot store checkpoints (on purpose)",
            ));
        }
        self.checkpoints.push(checkpoint);
        Ok(())
    }

    fn wait_while_paused(&mut self) -> Directive {
        self.events.push(Event::Wait);
        self.script.after_pause.unwrap_or(Directive::CONTINUE)
    }
}

/// A finished job: the host with its records, and what the backend returned.
pub(crate) type Ran = (KitHost, cyxwiz_sdk::Result<TrainingOutcome>);

/// Runs `job` with the plugin's training backend on a fresh thread under `limit`;
/// `Err` when it did not return in time (or the calling code panicked).
pub(crate) fn run_job(
    lib: &Arc<PluginLibrary>,
    job: TrainingJob,
    host: KitHost,
    limit: Duration,
) -> Result<Ran, String> {
    let lib = lib.clone();
    watchdog::within(limit, move || {
        let mut host = host;
        let result = lib
            .training_backend()
            .and_then(|trainer| trainer.train(&job, &mut host));
        (host, result)
    })
}
