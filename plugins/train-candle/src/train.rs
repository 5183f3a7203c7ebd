//! The training side: [`Trainee`] is the [`Network`] the SDK's shared loop drives (one
//! optimisation step, one evaluation, the tensors a checkpoint holds), and [`train`] runs a
//! job: device check, spec check, the thread bound, then the loop.

use crate::net::{self, runtime, Graph, Mode};
use crate::optim::Settings;
use crate::shapes;
use candle_core::{Device, Tensor, Var};
use cyxwiz_sdk::training::{
    self, Batch, NamedTensor, Network, StepContext, StepStats, TrainingHost, TrainingJob,
    TrainingOutcome,
};
use cyxwiz_sdk::{Error, Result};
use std::sync::Arc;

/// A thread pool that bounds candle's CPU work (matrix products, windows) when a job or a
/// model asks for a number of threads; `None` uses candle's default (rayon's global pool).
pub(crate) fn pool(threads: u32) -> Result<Option<Arc<rayon::ThreadPool>>> {
    if threads == 0 {
        return Ok(None);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads as usize)
        .thread_name(|i| format!("train-candle-{i}"))
        .build()
        .map(|p| Some(Arc::new(p)))
        .map_err(|e| Error::runtime(format!("cannot start {threads} threads: {e}")))
}

/// Runs `f` inside `pool` when there is one.
pub(crate) fn within<T: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> T + Send) -> T {
    match pool {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// A network being trained: parameters (as candle variables and plain copies), their
/// optimizer state, BatchNorm running statistics.
pub(crate) struct Trainee {
    graph: Graph,
    vars: Vec<Var>,
    values: Vec<Vec<f32>>,
    slots: Vec<Vec<Vec<f32>>>,
    running: Vec<Tensor>,
    optimizer: Settings,
    pool: Option<Arc<rayon::ThreadPool>>,
}

fn tensor(data: &[f32], shape: &[usize]) -> Result<Tensor> {
    Tensor::from_slice(data, shape, &Device::Cpu).map_err(runtime)
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(runtime)
}

impl Trainee {
    /// The network of `graph` from the loop's starting `parameters` and optimizer `state`
    /// (names without `state.`; a missing state tensor is zeros).
    pub(crate) fn build(
        graph: Graph,
        mut parameters: Vec<NamedTensor>,
        state: Vec<NamedTensor>,
        pool: Option<Arc<rayon::ThreadPool>>,
    ) -> Result<Self> {
        let optimizer = Settings::new(&graph.spec.optimizer);
        let mut state = state;
        let (mut vars, mut values, mut slots) = (Vec::new(), Vec::new(), Vec::new());
        for (name, shape) in &graph.trainable {
            let data = shapes::take(&mut parameters, name, shape)?;
            vars.push(Var::from_tensor(&tensor(&data, shape)?).map_err(runtime)?);
            let mut own = Vec::new();
            for slot in optimizer.slots() {
                let key = format!("{name}.{slot}");
                own.push(if state.iter().any(|t| t.name == key) {
                    shapes::take(&mut state, &key, shape)
                        .map_err(|e| Error::invalid_input(format!("optimizer state: {e}")))?
                } else {
                    vec![0.0; data.len()]
                });
            }
            values.push(data);
            slots.push(own);
        }
        let running = graph
            .running
            .iter()
            .map(|(name, shape)| tensor(&shapes::take(&mut parameters, name, shape)?, shape))
            .collect::<Result<_>>()?;
        Ok(Self {
            graph,
            vars,
            values,
            slots,
            running,
            optimizer,
            pool,
        })
    }

    fn labels(&self, batch: &Batch) -> Result<()> {
        if batch.shape.first() != Some(&batch.labels.len()) {
            return Err(Error::invalid_input(format!(
                "batch has {} labels for shape {:?}",
                batch.labels.len(),
                batch.shape
            )));
        }
        for &label in &batch.labels {
            net::label_index(label, self.graph.spec.classes)?;
        }
        Ok(())
    }

    fn step(&mut self, batch: &Batch, ctx: &StepContext) -> Result<StepStats> {
        self.labels(batch)?;
        let x = self.graph.input(&batch.inputs, &batch.shape)?;
        let params: Vec<Tensor> = self.vars.iter().map(|v| v.as_tensor().clone()).collect();
        let mut updates = Vec::new();
        let mode = Mode::Train {
            seed: ctx.seed,
            step: ctx.step,
        };
        let out = self
            .graph
            .forward(x, &params, &self.running, mode, &mut updates)?;
        let loss = self.graph.loss(&out, &batch.labels)?;
        let stats = StepStats {
            loss: f64::from(loss.to_scalar::<f32>().map_err(runtime)?),
            correct: net::correct(&out, &batch.labels)?,
            samples: batch.labels.len() as u64,
        };
        if !stats.loss.is_finite() {
            return Ok(stats); // the loop stops the job with the reason
        }
        let grads = loss.backward().map_err(runtime)?;
        for (i, var) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue; // unused parameter: no gradient, no step (as PyTorch)
            };
            let grad = values(grad)?;
            self.optimizer.update(
                &mut self.values[i],
                &grad,
                &mut self.slots[i],
                ctx.learning_rate,
                ctx.step,
            );
            var.set(&tensor(&self.values[i], var.dims())?)
                .map_err(runtime)?;
        }
        for update in updates {
            let shape = self.running[update.index].dims().to_vec();
            self.running[update.index] = tensor(&update.values, &shape)?;
        }
        Ok(stats)
    }

    fn eval(&self, batch: &Batch) -> Result<StepStats> {
        self.labels(batch)?;
        let x = self.graph.input(&batch.inputs, &batch.shape)?;
        let params: Vec<Tensor> = self.vars.iter().map(|v| v.as_tensor().detach()).collect();
        let out = self
            .graph
            .forward(x, &params, &self.running, Mode::Eval, &mut Vec::new())?;
        let loss = self.graph.loss(&out, &batch.labels)?;
        Ok(StepStats {
            loss: f64::from(loss.to_scalar::<f32>().map_err(runtime)?),
            correct: net::correct(&out, &batch.labels)?,
            samples: batch.labels.len() as u64,
        })
    }
}

impl Network for Trainee {
    fn train_step(&mut self, batch: &Batch, ctx: &StepContext) -> Result<StepStats> {
        let pool = self.pool.clone();
        within(pool.as_deref(), || self.step(batch, ctx))
    }

    fn evaluate(&mut self, batch: &Batch) -> Result<StepStats> {
        within(self.pool.as_deref(), || self.eval(batch))
    }

    fn parameters(&self) -> Result<Vec<NamedTensor>> {
        let mut out = Vec::new();
        for (name, shape, trainable) in shapes::tensors(&self.graph.spec) {
            let data = if trainable {
                let i = self.graph.trainable.iter().position(|(n, _)| *n == name);
                i.map(|i| self.values[i].clone())
            } else {
                let i = self.graph.running.iter().position(|(n, _)| *n == name);
                i.map(|i| values(&self.running[i])).transpose()?
            };
            let data = data.ok_or_else(|| Error::runtime(format!("tensor {name} is not held")))?;
            out.push(NamedTensor::new(name, shape, data));
        }
        Ok(out)
    }

    fn optimizer_state(&self) -> Result<Vec<NamedTensor>> {
        let mut out = Vec::new();
        for (i, (name, shape)) in self.graph.trainable.iter().enumerate() {
            for (slot, data) in self.optimizer.slots().iter().zip(&self.slots[i]) {
                out.push(NamedTensor::new(
                    format!("{name}.{slot}"),
                    shape.clone(),
                    data.clone(),
                ));
            }
        }
        Ok(out)
    }
}

/// The values one activation of the largest layer holds for a whole batch, bounded.
const MAX_BATCH_VALUES: u64 = 1 << 31;

/// Runs `job` through the SDK's shared loop on the CPU.
pub(crate) fn train(job: &TrainingJob, host: &mut dyn TrainingHost) -> Result<TrainingOutcome> {
    if job.device != "cpu" {
        return Err(Error::unsupported(format!(
            "train-candle runs on the CPU only; device {:?} is not available (use \"cpu\")",
            job.device
        )));
    }
    let graph = Graph::new(&job.model)?;
    let widest = std::iter::once(&job.model.input_shape)
        .chain(job.model.layers.iter().map(|l| &l.output_shape))
        .map(|s| s.iter().product::<usize>() as u64)
        .max()
        .unwrap_or(0);
    if widest.saturating_mul(u64::from(job.batch_size)) > MAX_BATCH_VALUES {
        return Err(Error::invalid_input(format!(
            "batch size {} is too large for this model: one activation would hold {} values (at most {MAX_BATCH_VALUES})",
            job.batch_size,
            widest.saturating_mul(u64::from(job.batch_size))
        )));
    }
    let pool = pool(job.threads)?;
    training::run(job, host, move |_, parameters, state| {
        Trainee::build(graph, parameters, state, pool)
    })
}

#[cfg(test)]
mod tests;
