//! One loaded model behind its own worker threads, fed by a bounded channel with one-shot
//! replies (the backend actor of text-embeddings-inference). Plugin calls run only on these
//! threads, never on the async runtime's, and each job carries its caller's tracing span.
//!
//! Requests that are waiting together are run as one batch (dynamic batching): a worker that
//! picks up an embedding job takes every other embedding job already queued, up to
//! `max_batch` inputs; a tensor job of a model whose inputs all have a dynamic first dimension
//! takes the queued tensor jobs with the same input layout and runs them concatenated. Right
//! after a batch of several jobs, a worker briefly waits for that many to come back (`batch`);
//! batching adds no waiting time for a single client or when the node is idle.
//!
//! Work for a client that went away is dropped: a job whose one-shot reply receiver is gone
//! (the HTTP handler's future was dropped when its client disconnected) is skipped when a
//! worker picks it up, batched or not, and never reaches the model.
//!
//! A generation streams its text on one bounded channel per request (`stream`), shared by its
//! choices and read directly by the caller; a caller that drops it (or stops reading) cancels
//! the generation at its next piece.

use super::backend::Backend;
use super::embedding::EmbeddingPipeline;
use batch::{gather, LastBatch};
use cyxwiz_plugin_host::LoadedModel;
use cyxwiz_sdk::{
    Capabilities, DType, Embeddings, Error as PluginError, GenerateRequest, ModelInfo, Tensor,
};
use std::time::Instant;
use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};
use stream::PieceSender;
pub use stream::{Piece, Pieces};
use tokio::sync::oneshot;

mod batch;
mod stream;

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
    /// The model already admits its `max_concurrent_requests`.
    #[error("model `{model}` is at its limit of {limit} concurrent requests")]
    AtCapacity {
        /// Model name.
        model: String,
        /// The limit.
        limit: usize,
    },
    /// The workers are gone (node shutting down or model undeployed).
    #[error("model `{0}` is stopped")]
    Stopped(String),
    /// The model cannot do what was asked.
    #[error("model `{model}` does not support {what}")]
    Unsupported {
        /// Model name.
        model: String,
        /// What was asked.
        what: &'static str,
    },
    /// The plugin returned an error.
    #[error(transparent)]
    Model(#[from] PluginError),
}

/// Input of an embedding request.
#[derive(Debug, Clone)]
pub enum EmbedInput {
    /// Texts, tokenized by the model.
    Texts(Vec<String>),
    /// Token ids, already tokenized.
    Tokens(Vec<Vec<u32>>),
}

impl EmbedInput {
    fn len(&self) -> usize {
        match self {
            EmbedInput::Texts(t) => t.len(),
            EmbedInput::Tokens(t) => t.len(),
        }
    }
}

/// The answer channel of one request. It also counts the request as in flight until the
/// answer is sent (or the job is dropped).
struct Reply<T> {
    tx: oneshot::Sender<Result<T, PluginError>>,
    _counted: InFlight,
}

impl<T> Reply<T> {
    fn send(self, value: Result<T, PluginError>) -> Result<(), Result<T, PluginError>> {
        self.tx.send(value)
    }

    /// Whether nobody waits for the answer any more (the caller went away).
    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Requests of one model: in flight now, answered so far, and their total time.
#[derive(Debug, Default)]
struct Counters {
    in_flight: AtomicUsize,
    answered: AtomicU64,
    busy_micros: AtomicU64,
}

/// One request counted in flight until dropped, then counted as answered with its time.
struct InFlight {
    counters: Arc<Counters>,
    since: std::time::Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.counters;
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        c.answered.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(self.since.elapsed().as_micros()).unwrap_or(u64::MAX);
        c.busy_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Request statistics of a model since it was loaded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestStats {
    /// Requests answered (successfully or not).
    pub answered: u64,
    /// Mean time from submission to answer, in milliseconds.
    pub mean_latency_ms: f64,
    /// Seconds since the model was loaded.
    pub uptime_seconds: f64,
}

enum Work {
    Infer {
        inputs: Vec<Tensor>,
        reply: Reply<Vec<Tensor>>,
    },
    Generate {
        request: GenerateRequest,
        /// Which choice of its request this is.
        index: usize,
        pieces: PieceSender,
        _counted: InFlight,
    },
    Embed {
        input: EmbedInput,
        max_batch_tokens: usize,
        reply: Reply<Embeddings>,
    },
}

impl Work {
    /// Whether the caller went away before the work started: nobody would read the answer.
    fn abandoned(&self) -> bool {
        match self {
            Work::Infer { reply, .. } => reply.is_closed(),
            Work::Generate { pieces, .. } => pieces.is_closed(),
            Work::Embed { reply, .. } => reply.is_closed(),
        }
    }
}

struct Job {
    work: Work,
    span: tracing::Span,
}

impl Job {
    /// Drops the job if its caller went away (counted as answered, never run); else keeps it.
    fn live(self) -> Option<Job> {
        if self.work.abandoned() {
            let _entered = self.span.enter();
            tracing::debug!("caller went away; dropping its queued request unrun");
            None
        } else {
            Some(self)
        }
    }
}

/// What a worker thread calls: a plugin model, or the host's embedding pipeline around one.
pub enum Engine<M = LoadedModel> {
    /// A model used as the plugin serves it.
    Plain(M),
    /// A tensor model wrapped in tokenizer and pooling.
    Embedding(Box<EmbeddingPipeline<M>>),
}

impl<M: Backend> Engine<M> {
    fn model(&self) -> &M {
        match self {
            Engine::Plain(m) => m,
            Engine::Embedding(p) => p.model(),
        }
    }
}

/// What a served model can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abilities {
    /// Tensor inference (`/v1/predict`).
    pub infer: bool,
    /// Text generation (chat and completions).
    pub generate: bool,
    /// Embeddings.
    pub embed: bool,
    /// Token-array embedding inputs.
    pub embed_tokens: bool,
}

/// A model served by worker threads.
pub struct ModelWorker {
    name: String,
    plugin: String,
    info: ModelInfo,
    abilities: Abilities,
    queue: usize,
    tx: crossbeam_channel::Sender<Job>,
    counters: Arc<Counters>,
    loaded_at: std::time::Instant,
    admit: usize,
}

impl std::fmt::Debug for ModelWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelWorker")
            .field("name", &self.name)
            .field("plugin", &self.plugin)
            .finish()
    }
}

/// Runs `f` and turns a panic in host code into an error (plugin panics are already caught
/// at the ABI boundary).
fn guarded<T>(f: impl FnOnce() -> Result<T, PluginError>) -> Result<T, PluginError> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(PluginError::runtime("internal error in the model worker")))
}

/// Runs one tensor inference and answers it.
fn infer_one<M: Backend>(model: &M, inputs: Vec<Tensor>, reply: Reply<Vec<Tensor>>) {
    let result = guarded(|| {
        let views: Vec<_> = inputs.iter().map(Tensor::view).collect();
        model.infer(&views)
    });
    let _ = reply.send(result);
}

fn run_one<M: Backend>(engine: &Engine<M>, job: Job) {
    let Some(job) = job.live() else {
        return;
    };
    let _entered = job.span.enter();
    match job.work {
        Work::Infer { inputs, reply } => infer_one(engine.model(), inputs, reply),
        Work::Generate {
            request,
            index,
            pieces,
            _counted,
        } => {
            let result = guarded(|| {
                // "Stop" once the caller is gone or stalled: the plugin cancels and frees
                // the slot.
                let mut sink = |text: &str| pieces.send(Piece::Text(index, text.to_string()));
                engine.model().generate(&request, &mut sink)
            });
            pieces.send(Piece::Done(index, result));
        }
        Work::Embed {
            input,
            max_batch_tokens,
            reply,
        } => match engine {
            Engine::Embedding(p) => run_embed_batch(p, vec![(input, reply)], max_batch_tokens),
            Engine::Plain(m) => {
                let result = guarded(|| match input {
                    EmbedInput::Texts(texts) => {
                        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                        m.embed(&refs)
                    }
                    EmbedInput::Tokens(_) => Err(PluginError::unsupported(
                        "token-array input is not supported by this model; send text",
                    )),
                });
                let _ = reply.send(result);
            }
        },
    }
}

/// Runs several embedding jobs of a pipeline together (in runs of at most `max_batch_tokens`
/// padded tokens, see [`EmbeddingPipeline::embed_ids`]) and splits the result.
fn run_embed_batch<M: Backend>(
    pipeline: &EmbeddingPipeline<M>,
    jobs: Vec<(EmbedInput, Reply<Embeddings>)>,
    max_batch_tokens: usize,
) {
    // Tokenize per job so one job's bad input fails only that job.
    let mut ready: Vec<(Vec<Vec<u32>>, Reply<Embeddings>)> = Vec::new();
    for (input, reply) in jobs {
        let ids = match input {
            EmbedInput::Texts(texts) => guarded(|| pipeline.tokenize(&texts)),
            EmbedInput::Tokens(ids) => Ok(ids),
        }
        .and_then(|ids| pipeline.check_lengths(&ids).map(|()| ids));
        match ids {
            Ok(ids) => ready.push((ids, reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    let all: Vec<&[u32]> = ready
        .iter()
        .flat_map(|(ids, _)| ids.iter().map(Vec::as_slice))
        .collect();
    match guarded(|| pipeline.embed_ids(&all, max_batch_tokens)) {
        Ok(out) => {
            let mut row = 0;
            for (ids, reply) in ready {
                let n = ids.len();
                let data = out.data[row * out.dim..(row + n) * out.dim].to_vec();
                let tokens = ids.iter().map(|t| t.len() as u32).sum();
                row += n;
                let _ = reply.send(Ok(Embeddings {
                    dim: out.dim,
                    data,
                    prompt_tokens: tokens,
                }));
            }
        }
        Err(e) => {
            for (_, reply) in ready {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Each input's name, dtype and shape after the first dimension.
type BatchKey = Vec<(String, DType, Vec<i64>)>;

/// Rows of a tensor job whose inputs all share one leading (batch) dimension, with the key
/// that jobs must share to be concatenated: each input's name, dtype and trailing shape.
fn tensor_rows(inputs: &[Tensor]) -> Option<(usize, BatchKey)> {
    let rows = *inputs.first()?.shape.first()?;
    if rows < 1 || inputs.iter().any(|t| t.shape.first() != Some(&rows)) {
        return None;
    }
    let mut key: Vec<_> = inputs
        .iter()
        .map(|t| (t.name.clone(), t.dtype, t.shape[1..].to_vec()))
        .collect();
    key.sort_by(|a, b| a.0.cmp(&b.0));
    Some((rows as usize, key))
}

/// Runs tensor jobs with the same input layout as one batch concatenated along the first
/// dimension and splits the outputs by rows. Anything unexpected (a plugin error, an output
/// whose first dimension is not the batch) falls back to running the jobs one by one, so a
/// batch never changes what a request gets.
fn run_infer_batch<M: Backend>(model: &M, jobs: Vec<(Vec<Tensor>, Reply<Vec<Tensor>>)>) {
    if jobs.len() <= 1 {
        for (inputs, reply) in jobs {
            infer_one(model, inputs, reply);
        }
        return;
    }
    let rows: Vec<usize> = jobs
        .iter()
        .map(|(inputs, _)| tensor_rows(inputs).map_or(0, |(r, _)| r))
        .collect();
    let total: usize = rows.iter().sum();
    let first = &jobs[0].0;
    let merged: Vec<Tensor> = first
        .iter()
        .map(|t| {
            let mut shape = t.shape.clone();
            shape[0] = total as i64;
            let mut data = Vec::with_capacity(t.data.len() * jobs.len());
            for (inputs, _) in &jobs {
                if let Some(same) = inputs.iter().find(|u| u.name == t.name) {
                    data.extend_from_slice(&same.data);
                }
            }
            Tensor {
                name: t.name.clone(),
                dtype: t.dtype,
                shape,
                data,
            }
        })
        .collect();
    let outputs = guarded(|| {
        let views: Vec<_> = merged.iter().map(Tensor::view).collect();
        model.infer(&views)
    });
    let splittable = outputs.as_ref().is_ok_and(|outs| {
        outs.iter()
            .all(|o| o.shape.first() == Some(&(total as i64)) && o.data.len() % total.max(1) == 0)
    });
    match outputs {
        Ok(outs) if splittable => {
            let mut start = 0;
            for ((_, reply), n) in jobs.into_iter().zip(rows) {
                let part = outs
                    .iter()
                    .map(|o| {
                        let row_bytes = o.data.len() / total;
                        let mut shape = o.shape.clone();
                        shape[0] = n as i64;
                        Tensor {
                            name: o.name.clone(),
                            dtype: o.dtype,
                            shape,
                            data: o.data[start * row_bytes..(start + n) * row_bytes].to_vec(),
                        }
                    })
                    .collect();
                start += n;
                let _ = reply.send(Ok(part));
            }
        }
        _ => {
            tracing::debug!(
                jobs = jobs.len(),
                "batch not splittable; running one by one"
            );
            for (inputs, reply) in jobs {
                infer_one(model, inputs, reply);
            }
        }
    }
}

fn worker_loop<M: Backend>(
    engine: &Engine<M>,
    rx: &crossbeam_channel::Receiver<Job>,
    max_batch: usize,
    batch_tensors: bool,
) {
    let mut last = LastBatch::default();
    while let Ok(job) = rx.recv() {
        let Some(job) = job.live() else {
            continue;
        };
        let span = job.span.clone();
        match (&job.work, engine) {
            (Work::Embed { .. }, Engine::Embedding(pipeline)) => {
                let (batch, others) = gather(job, rx, max_batch, &last, |w| match w {
                    Work::Embed { input, .. } => Some(input.len()),
                    _ => None,
                });
                let started = Instant::now();
                let jobs = batch.len();
                {
                    let _entered = span.enter();
                    tracing::debug!(jobs = batch.len(), "embedding batch");
                    let mut budget = usize::MAX;
                    let batch = batch
                        .into_iter()
                        .filter_map(|j| match j.work {
                            Work::Embed {
                                input,
                                max_batch_tokens,
                                reply,
                            } => {
                                // The strictest budget of the batch bounds every run.
                                budget = budget.min(max_batch_tokens);
                                Some((input, reply))
                            }
                            _ => None,
                        })
                        .collect();
                    run_embed_batch(pipeline, batch, budget);
                }
                last = LastBatch::after(jobs, started);
                for job in others {
                    run_one(engine, job);
                }
            }
            (Work::Infer { inputs, .. }, _) if batch_tensors => {
                let Some((_, key)) = tensor_rows(inputs) else {
                    run_one(engine, job);
                    continue;
                };
                let (batch, others) = gather(job, rx, max_batch, &last, |w| match w {
                    Work::Infer { inputs, .. } => tensor_rows(inputs)
                        .filter(|(_, k)| *k == key)
                        .map(|(r, _)| r),
                    _ => None,
                });
                let started = Instant::now();
                let jobs = batch.len();
                {
                    let _entered = span.enter();
                    tracing::debug!(jobs = batch.len(), "tensor batch");
                    let batch = batch
                        .into_iter()
                        .filter_map(|j| match j.work {
                            Work::Infer { inputs, reply } => Some((inputs, reply)),
                            _ => None,
                        })
                        .collect();
                    run_infer_batch(engine.model(), batch);
                }
                last = LastBatch::after(jobs, started);
                for job in others {
                    run_one(engine, job);
                }
            }
            _ => run_one(engine, job),
        }
    }
}

impl ModelWorker {
    /// Starts `workers` threads serving `engine`, with room for `queue` waiting requests.
    pub fn spawn<M: Backend>(
        name: &str,
        plugin: &str,
        engine: Engine<M>,
        workers: usize,
        queue: usize,
        max_batch: usize,
    ) -> std::io::Result<Self> {
        let info = engine.model().info().clone();
        let caps = info.capabilities;
        let abilities = match &engine {
            Engine::Embedding(_) => Abilities {
                infer: true,
                generate: false,
                embed: true,
                embed_tokens: true,
            },
            Engine::Plain(_) => Abilities {
                infer: caps.contains(Capabilities::TENSOR_INFERENCE),
                generate: caps.contains(Capabilities::TEXT_GENERATION),
                embed: caps.contains(Capabilities::EMBEDDINGS),
                embed_tokens: false,
            },
        };
        // Tensor requests are batched when every input has a dynamic first dimension.
        let batch_tensors = max_batch > 1
            && matches!(engine, Engine::Plain(_))
            && abilities.infer
            && !info.inputs.is_empty()
            && info.inputs.iter().all(|s| s.shape.first() == Some(&-1));
        let engine = Arc::new(engine);
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let engine = engine.clone();
            std::thread::Builder::new()
                .name(format!("model-{name}-{i}"))
                .spawn(move || worker_loop(&engine, &rx, max_batch.max(1), batch_tensors))?;
        }
        Ok(Self {
            name: name.to_string(),
            plugin: plugin.to_string(),
            info,
            abilities,
            queue: queue.max(1),
            tx,
            counters: Arc::default(),
            loaded_at: std::time::Instant::now(),
            admit: 0,
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

    /// What the model can be asked for.
    pub fn abilities(&self) -> Abilities {
        self.abilities
    }

    /// Requests waiting for a worker.
    pub fn queue_depth(&self) -> usize {
        self.tx.len()
    }

    /// Admits at most `limit` requests at once (running or waiting); 0 = no limit besides the
    /// queue.
    pub fn with_admission_limit(mut self, limit: usize) -> Self {
        self.admit = limit;
        self
    }

    /// Requests submitted and not yet answered (waiting or running).
    pub fn in_flight(&self) -> usize {
        self.counters.in_flight.load(Ordering::Relaxed)
    }

    /// Requests answered since loading, and their mean latency.
    pub fn stats(&self) -> RequestStats {
        let answered = self.counters.answered.load(Ordering::Relaxed);
        let micros = self.counters.busy_micros.load(Ordering::Relaxed);
        RequestStats {
            answered,
            mean_latency_ms: if answered == 0 {
                0.0
            } else {
                micros as f64 / answered as f64 / 1000.0
            },
            uptime_seconds: self.loaded_at.elapsed().as_secs_f64(),
        }
    }

    /// Counts one request in flight until the returned guard is dropped.
    fn count(&self) -> InFlight {
        self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            counters: self.counters.clone(),
            since: std::time::Instant::now(),
        }
    }

    fn reply_channel<T>(&self) -> (Reply<T>, oneshot::Receiver<Result<T, PluginError>>) {
        let (tx, rx) = oneshot::channel();
        (
            Reply {
                tx,
                _counted: self.count(),
            },
            rx,
        )
    }

    fn submit(&self, work: Work) -> Result<(), WorkerError> {
        // The request being submitted is already counted in `in_flight`.
        if self.admit > 0 && self.in_flight() > self.admit {
            return Err(WorkerError::AtCapacity {
                model: self.name.clone(),
                limit: self.admit,
            });
        }
        let job = Job {
            work,
            span: tracing::Span::current(),
        };
        self.tx.try_send(job).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => WorkerError::Overloaded {
                model: self.name.clone(),
                queue: self.queue,
            },
            crossbeam_channel::TrySendError::Disconnected(_) => {
                WorkerError::Stopped(self.name.clone())
            }
        })
    }

    fn require(&self, ok: bool, what: &'static str) -> Result<(), WorkerError> {
        if ok {
            Ok(())
        } else {
            Err(WorkerError::Unsupported {
                model: self.name.clone(),
                what,
            })
        }
    }

    async fn wait<T>(
        &self,
        rx: oneshot::Receiver<Result<T, PluginError>>,
    ) -> Result<T, WorkerError> {
        Ok(rx
            .await
            .map_err(|_| WorkerError::Stopped(self.name.clone()))??)
    }

    /// Runs inference on a worker thread and awaits the result.
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, WorkerError> {
        self.require(self.abilities.infer, "tensor inference")?;
        let (reply, rx) = self.reply_channel();
        self.submit(Work::Infer { inputs, reply })?;
        self.wait(rx).await
    }

    /// Runs inference on a worker thread and blocks until it is done (outside async code).
    pub fn infer_blocking(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, WorkerError> {
        self.require(self.abilities.infer, "tensor inference")?;
        let (reply, rx) = self.reply_channel();
        self.submit(Work::Infer { inputs, reply })?;
        Ok(rx
            .blocking_recv()
            .map_err(|_| WorkerError::Stopped(self.name.clone()))??)
    }

    /// Starts one generation per request (the choices of one API request; they join the
    /// model's continuous batches). Their pieces arrive on the one returned bounded channel
    /// as they are made, each choice's ending with [`Piece::Done`]; the channel closes
    /// without it only if the workers stop. Dropping the receiver cancels every choice.
    pub fn generate(&self, requests: Vec<GenerateRequest>) -> Result<Pieces, WorkerError> {
        self.require(self.abilities.generate, "text generation")?;
        let (tx, rx) = stream::channel(requests.len());
        for (index, request) in requests.into_iter().enumerate() {
            // On a refusal the choices already queued are cancelled with the receiver.
            self.submit(Work::Generate {
                request,
                index,
                pieces: tx.clone(),
                _counted: self.count(),
            })?;
        }
        Ok(rx)
    }

    /// Embeds texts or token arrays on a worker thread; a tokenizing pipeline runs the model
    /// on at most `max_batch_tokens` padded tokens at a time (`[api] max_batch_tokens`).
    pub async fn embed(
        &self,
        input: EmbedInput,
        max_batch_tokens: usize,
    ) -> Result<Embeddings, WorkerError> {
        self.require(self.abilities.embed, "embeddings")?;
        if matches!(input, EmbedInput::Tokens(_)) {
            self.require(self.abilities.embed_tokens, "token-array embedding input")?;
        }
        let (reply, rx) = self.reply_channel();
        self.submit(Work::Embed {
            input,
            max_batch_tokens,
            reply,
        })?;
        self.wait(rx).await
    }
}

#[cfg(test)]
pub(crate) mod tests;
