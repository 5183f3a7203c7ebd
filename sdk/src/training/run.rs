//! The training loop every backend shares: resume or initialise, epochs of host-provided
//! batches, validation, progress, checkpoints, pause and stop. A backend supplies only the
//! numerics ([`Network`]); the loop's behaviour (what is checkpointed when, how a pause or a
//! cancel is obeyed, which metrics are reported) is therefore the same for all of them.

use super::init::initial_parameters;
use super::job::{
    Batch, Checkpoint, CheckpointReason, DataSplit, Directive, TrainingHost, TrainingJob,
    TrainingOutcome, TrainingProgress,
};
use super::spec::ModelSpec;
use super::tensors::{NamedTensor, TensorFile, MODEL_KEY, STATE_PREFIX};
use crate::error::{Error, Result};
use crate::types::Metric;

/// What a training step needs besides the batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepContext {
    /// The job's seed (dropout masks: [`super::dropout_mask`]).
    pub seed: u64,
    /// The 1-based global step number (Adam's bias correction, dropout masks).
    pub step: u64,
    /// The learning rate for this step.
    pub learning_rate: f64,
}

/// A batch's results.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepStats {
    /// The mean loss over the batch (before the update, for a training step).
    pub loss: f64,
    /// Samples whose highest-scoring class is the label.
    pub correct: u64,
    /// Samples in the batch.
    pub samples: u64,
}

/// A backend's network: the numerics the shared loop drives.
pub trait Network {
    /// One optimisation step: forward (dropout on, batch statistics for BatchNorm), loss,
    /// backward, optimizer update.
    fn train_step(&mut self, batch: &Batch, ctx: &StepContext) -> Result<StepStats>;
    /// Loss and accuracy without updating anything (dropout off, running statistics).
    fn evaluate(&mut self, batch: &Batch) -> Result<StepStats>;
    /// The model tensors by spec name, PyTorch layout (BatchNorm running statistics too).
    fn parameters(&self) -> Result<Vec<NamedTensor>>;
    /// The optimizer's state tensors (names without the `state.` prefix, which the loop adds).
    fn optimizer_state(&self) -> Result<Vec<NamedTensor>>;
}

/// Where a job is: the next batch to train and the running totals of the current epoch.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Position {
    epoch: u32,
    batch: u64,
    steps_done: u64,
    samples: u64,
    loss_sum: f64,
    correct: u64,
    seen: u64,
}

impl Position {
    fn epochs_done(&self) -> u32 {
        self.epoch
    }

    fn write(&self, file: &mut TensorFile) {
        let mut put = |k: &str, v: String| {
            file.metadata.insert(format!("{STATE_PREFIX}{k}"), v);
        };
        put("epoch", self.epoch.to_string());
        put("batch", self.batch.to_string());
        put("steps_done", self.steps_done.to_string());
        put("samples", self.samples.to_string());
        put("loss_sum", format!("{:?}", self.loss_sum));
        put("correct", self.correct.to_string());
        put("seen", self.seen.to_string());
    }

    fn read(file: &TensorFile) -> Result<Self> {
        let get = |k: &str| format!("{STATE_PREFIX}{k}");
        Ok(Self {
            epoch: file.meta_parse(&get("epoch"))?,
            batch: file.meta_parse(&get("batch"))?,
            steps_done: file.meta_parse(&get("steps_done"))?,
            samples: file.meta_parse(&get("samples"))?,
            loss_sum: file.meta_parse(&get("loss_sum"))?,
            correct: file.meta_parse(&get("correct"))?,
            seen: file.meta_parse(&get("seen"))?,
        })
    }
}

/// A checkpoint read back: model tensors, optimizer state (prefix removed) and position.
struct Resumed {
    parameters: Vec<NamedTensor>,
    state: Vec<NamedTensor>,
    position: Position,
}

fn decode_resume(bytes: &[u8], model: &ModelSpec) -> Result<Resumed> {
    let file = TensorFile::decode(bytes)
        .map_err(|e| Error::invalid_input(format!("resume checkpoint: {}", e.message)))?;
    let written: ModelSpec = serde_json::from_str(file.meta(MODEL_KEY).unwrap_or("null"))
        .map_err(|e| Error::invalid_input(format!("resume checkpoint has no model spec: {e}")))?;
    // The learning rate may change between runs (a job retuned at an epoch boundary); the
    // rest of the model must be the one the checkpoint was written for.
    let mut same_but_rate = written.clone();
    same_but_rate.optimizer.learning_rate = model.optimizer.learning_rate;
    if &same_but_rate != model {
        return Err(Error::invalid_input(
            "resume checkpoint was written for a different model",
        ));
    }
    let position = Position::read(&file)?;
    let (state, parameters): (Vec<_>, Vec<_>) = file
        .tensors
        .into_iter()
        .partition(|t| t.name.starts_with(STATE_PREFIX));
    let state = state
        .into_iter()
        .map(|mut t| {
            t.name = t.name[STATE_PREFIX.len()..].to_owned();
            t
        })
        .collect();
    Ok(Resumed {
        parameters,
        state,
        position,
    })
}

struct Loop<'h, N> {
    job: &'h TrainingJob,
    host: &'h mut dyn TrainingHost,
    net: N,
    model_json: String,
    at: Position,
    last: Vec<Metric>,
}

impl<N: Network> Loop<'_, N> {
    fn checkpoint(&mut self, reason: CheckpointReason) -> Result<()> {
        let mut file = TensorFile {
            tensors: self.net.parameters()?,
            metadata: Default::default(),
        };
        for mut t in self.net.optimizer_state()? {
            t.name = format!("{STATE_PREFIX}{}", t.name);
            file.tensors.push(t);
        }
        file.metadata
            .insert(MODEL_KEY.into(), self.model_json.clone());
        self.at.write(&mut file);
        self.host.checkpoint(Checkpoint {
            reason,
            epochs_done: self.at.epochs_done(),
            steps_done: self.at.steps_done,
            data: file.encode(),
        })
    }

    /// Obeys a directive; true when the job must stop now.
    fn obey(&mut self, directive: Directive) -> Result<bool> {
        let directive = if directive == Directive::PAUSE {
            self.checkpoint(CheckpointReason::PAUSE)?;
            self.host.wait_while_paused()
        } else {
            directive
        };
        if directive == Directive::STOP {
            self.checkpoint(CheckpointReason::STOPPED)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn running_metrics(&self) -> Vec<Metric> {
        let seen = self.at.seen.max(1) as f64;
        vec![
            metric("loss", self.at.loss_sum / seen),
            metric("accuracy", self.at.correct as f64 / seen),
        ]
    }

    fn progress(&self, epoch_end: bool, metrics: Vec<Metric>) -> TrainingProgress {
        TrainingProgress {
            epoch: if epoch_end {
                self.at.epoch
            } else {
                self.at.epoch + 1
            },
            total_epochs: self.job.epochs,
            step: if epoch_end {
                self.job.train_batches
            } else {
                self.at.batch
            },
            total_steps: self.job.train_batches,
            samples: self.at.samples,
            epoch_end,
            metrics,
            message: String::new(),
        }
    }

    fn validate(&mut self, epoch: u32) -> Result<Vec<Metric>> {
        if self.job.validation_batches == 0 {
            return Ok(Vec::new());
        }
        let (mut loss, mut correct, mut seen) = (0.0, 0u64, 0u64);
        for index in 0..self.job.validation_batches {
            let batch = self.host.batch(DataSplit::VALIDATION, epoch, index)?;
            let stats = self.net.evaluate(&batch)?;
            loss += stats.loss * stats.samples as f64;
            correct += stats.correct;
            seen += stats.samples;
        }
        let seen = seen.max(1) as f64;
        Ok(vec![
            metric("val_loss", loss / seen),
            metric("val_accuracy", correct as f64 / seen),
        ])
    }

    /// Runs until done or stopped; true when stopped.
    fn run(&mut self) -> Result<bool> {
        let lr = self.job.model.optimizer.learning_rate;
        while self.at.epoch < self.job.epochs {
            let epoch = self.at.epoch;
            while self.at.batch < self.job.train_batches {
                let batch = self.host.batch(DataSplit::TRAIN, epoch, self.at.batch)?;
                let ctx = StepContext {
                    seed: self.job.seed,
                    step: self.at.steps_done + 1,
                    learning_rate: lr,
                };
                let stats = self.net.train_step(&batch, &ctx)?;
                if !stats.loss.is_finite() {
                    return Err(Error::invalid_input(format!(
                        "the loss became {} at epoch {}, batch {} (learning rate {lr} too high?)",
                        stats.loss,
                        epoch + 1,
                        self.at.batch + 1
                    )));
                }
                self.at.batch += 1;
                self.at.steps_done += 1;
                self.at.samples += stats.samples;
                self.at.loss_sum += stats.loss * stats.samples as f64;
                self.at.correct += stats.correct;
                self.at.seen += stats.samples;
                let directive = self
                    .host
                    .report(&self.progress(false, self.running_metrics()));
                if self.obey(directive)? {
                    return Ok(true);
                }
            }
            let mut metrics = self.running_metrics();
            metrics.extend(self.validate(epoch)?);
            self.at = Position {
                epoch: epoch + 1,
                batch: 0,
                loss_sum: 0.0,
                correct: 0,
                seen: 0,
                ..self.at
            };
            let last = self.at.epoch == self.job.epochs;
            self.checkpoint(if last {
                CheckpointReason::FINAL
            } else {
                CheckpointReason::EPOCH
            })?;
            let directive = self.host.report(&self.progress(true, metrics.clone()));
            self.last = metrics;
            if !last && self.obey(directive)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn metric(name: &str, value: f64) -> Metric {
    Metric {
        name: name.into(),
        value,
    }
}

/// Runs `job` with the network `build` makes from the spec, the starting parameters (from
/// the resume checkpoint, else [`initial_parameters`] of the job's seed) and the optimizer
/// state (empty when starting afresh). A job whose epochs are all done already (resumed from
/// its final checkpoint) writes the final checkpoint again and returns.
pub fn run<N: Network>(
    job: &TrainingJob,
    host: &mut dyn TrainingHost,
    build: impl FnOnce(&ModelSpec, Vec<NamedTensor>, Vec<NamedTensor>) -> Result<N>,
) -> Result<TrainingOutcome> {
    if job.epochs == 0 || job.train_batches == 0 || job.batch_size == 0 {
        return Err(Error::invalid_input(
            "a job needs at least one epoch, one batch and one sample per batch",
        ));
    }
    let (parameters, state, position) = if job.resume.is_empty() {
        (
            initial_parameters(&job.model, job.seed),
            Vec::new(),
            Position::default(),
        )
    } else {
        let r = decode_resume(&job.resume, &job.model)?;
        (r.parameters, r.state, r.position)
    };
    let net = build(&job.model, parameters, state)?;
    let model_json = serde_json::to_string(&job.model)
        .map_err(|e| Error::runtime(format!("model spec does not serialize: {e}")))?;
    let mut state = Loop {
        job,
        host,
        net,
        model_json,
        at: position,
        last: Vec::new(),
    };
    if state.at.epoch >= job.epochs {
        state.checkpoint(CheckpointReason::FINAL)?;
    }
    let stopped = state.run()?;
    let mut metrics = state.last.clone();
    if stopped && metrics.is_empty() {
        metrics = state.running_metrics();
    }
    Ok(TrainingOutcome {
        epochs_done: state.at.epochs_done(),
        stopped,
        metrics,
    })
}
