//! One loaded model behind its own worker threads, fed by a bounded channel with one-shot
//! replies (the backend actor of text-embeddings-inference). Plugin calls run only on these
//! threads, never on the async runtime's, and each job carries its caller's tracing span.

use cyxwiz_sdk::{client::LoadedModel, Error as PluginError, ModelInfo, Tensor};
use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
};
use tokio::sync::oneshot;

/// Why a call to a model did not produce outputs.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The queue is full.
    #[error("model `{model}` is overloaded: {queue} requests already waiting")]
    Overloaded {
        /// Model name.
        model: String,
        /// Queue capacity.
        queue: usize,
    },
    /// The workers are gone (node shutting down).
    #[error("model `{0}` is stopped")]
    Stopped(String),
    /// The plugin returned an error.
    #[error(transparent)]
    Model(#[from] PluginError),
}

type Reply = oneshot::Sender<Result<Vec<Tensor>, PluginError>>;

struct Job {
    inputs: Vec<Tensor>,
    span: tracing::Span,
    reply: Reply,
}

/// A model served by worker threads.
pub struct ModelWorker {
    name: String,
    plugin: String,
    info: ModelInfo,
    queue: usize,
    tx: crossbeam_channel::Sender<Job>,
}

impl std::fmt::Debug for ModelWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelWorker")
            .field("name", &self.name)
            .field("plugin", &self.plugin)
            .finish()
    }
}

fn run_job(model: &LoadedModel, job: Job) {
    let _entered = job.span.enter();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let views: Vec<_> = job.inputs.iter().map(Tensor::view).collect();
        model.infer(&views)
    }))
    .unwrap_or_else(|_| Err(PluginError::runtime("internal error in the model worker")));
    // The caller may have gone away; its reply is then dropped.
    let _ = job.reply.send(result);
}

impl ModelWorker {
    /// Starts `workers` threads serving `model`, with room for `queue` waiting requests.
    pub fn spawn(
        name: &str,
        plugin: &str,
        model: LoadedModel,
        workers: usize,
        queue: usize,
    ) -> std::io::Result<Self> {
        let info = model.info().clone();
        let model = Arc::new(model);
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let model = model.clone();
            std::thread::Builder::new()
                .name(format!("model-{name}-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        run_job(&model, job);
                    }
                })?;
        }
        Ok(Self {
            name: name.to_string(),
            plugin: plugin.to_string(),
            info,
            queue: queue.max(1),
            tx,
        })
    }

    /// The model's public name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin serving it.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Specs, memory and capabilities.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn submit(
        &self,
        inputs: Vec<Tensor>,
    ) -> Result<oneshot::Receiver<Result<Vec<Tensor>, PluginError>>, WorkerError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            inputs,
            span: tracing::Span::current(),
            reply,
        };
        self.tx.try_send(job).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => WorkerError::Overloaded {
                model: self.name.clone(),
                queue: self.queue,
            },
            crossbeam_channel::TrySendError::Disconnected(_) => {
                WorkerError::Stopped(self.name.clone())
            }
        })?;
        Ok(rx)
    }

    /// Runs inference on a worker thread and awaits the result.
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, WorkerError> {
        let rx = self.submit(inputs)?;
        Ok(rx
            .await
            .map_err(|_| WorkerError::Stopped(self.name.clone()))??)
    }

    /// Runs inference on a worker thread and blocks until it is done (outside async code).
    pub fn infer_blocking(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, WorkerError> {
        let rx = self.submit(inputs)?;
        Ok(rx
            .blocking_recv()
            .map_err(|_| WorkerError::Stopped(self.name.clone()))??)
    }
}
