//! The decoding engine of one loaded model: a thread that owns the llama.cpp context and runs
//! continuous batching. Concurrent `generate` calls become sequences in free slots of one
//! shared context; every step decodes one batch holding the next prompt chunk or sampled token
//! of every active slot, so all streams progress together. Requests beyond the slots wait in
//! a bounded queue; beyond that they are refused at once.
//!
//! Cancellation is bounded by one decode step: a caller answers every piece of text it is sent
//! (what its sink returned, see `Control`), and a slot enters a batch only while at most
//! `AHEAD` (1) of its pieces are unanswered, so a caller is never more than one piece behind.
//! The engine used to run ahead of its callers without limit (pieces queued in the channel
//! while the caller worked through older ones), so a stream whose sink said stop went on for
//! another 10 or 20 tokens. Now, when the sink says stop, the stream has produced at most one
//! piece more (normally one token: the step under way), it is retired when the next batch is
//! built, and the sink is never called again. The one piece of slack lets the caller's answer
//! overlap the next decode instead of stalling every step on a thread wake-up; a caller that
//! lags further skips steps, alone: the others are decoded without waiting for it (waiting up
//! to 20 ms per step for the slowest caller cut the engine's throughput under CPU contention,
//! where a caller's thread often is not scheduled within one step). When no slot can be
//! decoded the engine parks until an answer or a new job wakes it.

use crate::{
    adapt,
    cache::PromptCache,
    slot::{Readiness, Slot, Step as SlotStep},
};
use cyxwiz_sdk::{Error, FinishReason, GenerateOutput, Result};
use llama_cpp_2::{
    context::params::LlamaContextParams, llama_backend::LlamaBackend, llama_batch::LlamaBatch,
    model::LlamaModel, token::LlamaToken,
};
use std::{
    num::NonZeroU32,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread::Thread,
    time::Duration,
};

/// Unanswered pieces a slot may have and still be decoded: 1 lets a caller's answer overlap the
/// next step, so a stop takes effect at most one piece (normally one step) late; 0 would make
/// it exact but stall every step on the caller's thread wake-up.
pub const AHEAD: u64 = 1;
/// Most prompt tokens one decode call takes, and always one sequence's only. Below 64 rows
/// (ggml's `GGML_FA_TILE_Q`), llama.cpp's CPU flash attention computes every row with the same
/// kernel, and one sequence per call keeps llama.cpp from splitting the chunk across ubatches
/// (it splits batches of several sequences into equal shares): so a prompt token gets the
/// same values whatever else runs and however much of the prompt was reused, which is what
/// makes prefix reuse leave greedy output unchanged.
const PROMPT_CHUNK: usize = 63;
/// How long the engine sleeps when every slot waits for an answer (answers and new jobs wake
/// it at once; this only bounds a missed wake-up).
const IDLE_POLL: Duration = Duration::from_millis(50);

/// What the engine sends back while a request runs.
pub enum Event {
    /// A piece of generated text.
    Text(String),
    /// The request finished.
    Done(Result<GenerateOutput>),
}

/// A generation request handed to the engine.
pub struct Job {
    /// Prompt tokens after templating.
    pub prompt: Vec<LlamaToken>,
    /// Sampling and stopping.
    pub params: cyxwiz_sdk::SamplingParams,
    /// The caller's answers and cancellation.
    pub control: Arc<Control>,
    /// Where text and the outcome go.
    pub events: mpsc::Sender<Event>,
}

/// What a caller tells the engine about its request: how many pieces of text it has answered
/// and whether it wants no more. Each answer wakes the engine.
pub struct Control {
    cancelled: AtomicBool,
    answered: AtomicU64,
    engine: Thread,
}

impl Control {
    /// Answers the oldest unanswered piece: `go` is what the sink returned.
    pub fn answer(&self, go: bool) {
        // Cancel first: the engine reads `answered` before `cancelled`, so once it sees this
        // answer it also sees the cancellation.
        if !go {
            self.cancelled.store(true, Ordering::Release);
        }
        self.answered.fetch_add(1, Ordering::Release);
        self.engine.unpark();
    }

    /// Asks the engine to drop the request.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.engine.unpark();
    }

    /// Pieces answered so far (read before `cancelled`).
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Acquire)
    }

    /// Whether the caller wants no more.
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

/// Cancels its request when dropped: a caller that leaves `generate` early (a panicking sink)
/// frees the slot instead of leaving the engine waiting for an answer.
pub struct CancelOnDrop(pub Arc<Control>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Parallel sequences sharing the context.
    pub slots: u32,
    /// Context length per sequence.
    pub context_per_slot: u32,
    /// Threads for single-token decoding (the maximum when `adaptive`).
    pub threads: i32,
    /// Threads for prompt batches (the maximum when `adaptive`).
    pub threads_batch: i32,
    /// Re-pick the thread counts from the machine's load whenever work starts after idling
    /// (see `adapt`).
    pub adaptive: bool,
    /// Requests that may wait for a slot.
    pub queue: usize,
    /// Keep each sequence's KV cache after its request and reuse the longest shared prompt
    /// prefix (see `cache`).
    pub prompt_cache: bool,
}

/// The caller's side of the engine.
pub struct EngineHandle {
    tx: mpsc::SyncSender<Job>,
    queue: usize,
    thread: Thread,
}

impl EngineHandle {
    /// Starts the engine thread; returns once the context exists (or failed to).
    pub fn start(
        backend: &'static LlamaBackend,
        model: Arc<LlamaModel>,
        config: EngineConfig,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(config.queue);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let queue = config.queue;
        let thread = std::thread::Builder::new()
            .name("llama-engine".into())
            .spawn(move || run(backend, &model, config, rx, ready_tx))
            .map_err(|e| Error::runtime(format!("cannot start the decoding thread: {e}")))?
            .thread()
            .clone();
        ready_rx
            .recv()
            .map_err(|_| Error::runtime("the decoding thread stopped while starting"))??;
        Ok(Self { tx, queue, thread })
    }

    /// A fresh control for one request.
    pub fn control(&self) -> Arc<Control> {
        Arc::new(Control {
            cancelled: AtomicBool::new(false),
            answered: AtomicU64::new(0),
            engine: self.thread.clone(),
        })
    }

    /// Queues a job; fails at once when the queue is full.
    pub fn submit(&self, job: Job) -> Result<()> {
        let sent = self.tx.try_send(job);
        // The engine may be parked waiting for answers while it has free slots.
        self.thread.unpark();
        sent.map_err(|e| match e {
            mpsc::TrySendError::Full(_) => Error::new(
                cyxwiz_sdk::ErrorKind::BUSY,
                format!(
                    "all slots are busy and {} requests are already waiting",
                    self.queue
                ),
            ),
            mpsc::TrySendError::Disconnected(_) => Error::runtime("the decoding thread stopped"),
        })
    }
}

fn context_params(config: &EngineConfig, threads: (i32, i32)) -> LlamaContextParams {
    let n_ctx = config.context_per_slot.saturating_mul(config.slots);
    let n_batch = 512u32.max(config.slots);
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_seq_max(config.slots)
        .with_n_threads(threads.0)
        .with_n_threads_batch(threads.1)
}

/// The thread counts to run with now: fixed, or chosen from the load.
fn pick_threads(config: &EngineConfig) -> (i32, i32) {
    if !config.adaptive {
        return (config.threads, config.threads_batch);
    }
    (
        adapt::choose(config.threads),
        adapt::choose(config.threads_batch),
    )
}

fn run(
    backend: &LlamaBackend,
    model: &LlamaModel,
    config: EngineConfig,
    rx: mpsc::Receiver<Job>,
    ready: mpsc::Sender<Result<()>>,
) {
    let n_ctx = config.context_per_slot.saturating_mul(config.slots);
    let mut threads = pick_threads(&config);
    let mut ready = Some(ready);
    // A job taken off the queue while idle, kept across a context rebuild.
    let mut carried: Option<Job> = None;
    loop {
        let ctx = match model.new_context(backend, context_params(&config, threads)) {
            Ok(ctx) => ctx,
            Err(e) => {
                let err = Error::out_of_memory(format!(
                    "cannot create a {n_ctx}-token context ({} slots x {}): {e}",
                    config.slots, config.context_per_slot
                ));
                match ready.take() {
                    Some(ready) => {
                        let _ = ready.send(Err(err));
                    }
                    None => {
                        if let Some(job) = carried.take() {
                            let _ = job.events.send(Event::Done(Err(err)));
                        }
                    }
                }
                return;
            }
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        }
        match serve(model, &config, ctx, threads, &rx, carried.take()) {
            // Work starts with other thread counts: rebuild the context (all slots idle).
            Some((job, wanted)) => {
                cyxwiz_sdk::tracing::debug!(
                    decode = wanted.0,
                    batch = wanted.1,
                    other_load = adapt::others(),
                    "llama.cpp threads adapted to the machine's load"
                );
                threads = wanted;
                carried = Some(job);
            }
            None => return,
        }
    }
}

/// Runs continuous batching on `ctx` until the queue closes (`None`), or until work arrives
/// after idling and the load calls for other thread counts (`Some`: the job and the counts).
fn serve(
    model: &LlamaModel,
    config: &EngineConfig,
    mut ctx: llama_cpp_2::context::LlamaContext<'_>,
    threads: (i32, i32),
    rx: &mpsc::Receiver<Job>,
    mut carried: Option<Job>,
) -> Option<(Job, (i32, i32))> {
    let n_batch = 512u32.max(config.slots);
    let mut slots: Vec<Option<Slot>> = (0..config.slots).map(|_| None).collect();
    let mut batch = LlamaBatch::new(n_batch as usize, config.slots as i32);
    let mut closed = false;
    let mut cache = PromptCache::new(slots.len(), config.prompt_cache);
    // Holds this engine's threads in the process-wide count while it has work.
    let mut busy: Option<adapt::Busy> = None;

    loop {
        // Fill free slots; block for work only when nothing is running.
        let idle = slots.iter().all(Option::is_none);
        if idle {
            busy = None;
            if closed {
                return None;
            }
        }
        // Free sequences take queued jobs, each placed where the longest prefix of its prompt
        // is still cached.
        let mut placed = 0;
        loop {
            let free: Vec<usize> = (0..slots.len()).filter(|&s| slots[s].is_none()).collect();
            if free.is_empty() {
                break;
            }
            let job = if let Some(job) = carried.take() {
                job
            } else if idle && placed == 0 {
                match rx.recv() {
                    Ok(job) => {
                        let wanted = pick_threads(config);
                        if wanted != threads {
                            return Some((job, wanted));
                        }
                        job
                    }
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            } else {
                match rx.try_recv() {
                    Ok(job) => job,
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            };
            placed += 1;
            let Some(at) = cache.place(&free, &job.prompt) else {
                carried = Some(job);
                break;
            };
            // Whatever the sequence holds past the reused prefix goes (all of it when nothing
            // is reused); a model whose memory cannot drop a tail starts from scratch.
            let seq = at.seq as u32;
            let reused = match ctx.clear_kv_cache_seq(Some(seq), Some(at.reused as u32), None) {
                Ok(true) => at.reused,
                _ => {
                    let _ = ctx.clear_kv_cache_seq(Some(seq), None, None);
                    0
                }
            };
            cache.take(at.seq);
            slots[at.seq] = Slot::start(model, at.seq as i32, job, config.context_per_slot, reused);
        }
        if busy.is_none() && slots.iter().any(Option::is_some) {
            busy = Some(adapt::Busy::new(threads.0.max(threads.1)));
        }
        // Slots whose caller keeps up; cancelled slots leave here, before anything more is
        // decoded.
        let mut ready: Vec<usize> = Vec::new();
        let mut waiting = false;
        for (seq, slot) in slots.iter_mut().enumerate() {
            let Some(active) = slot.as_mut() else {
                continue;
            };
            match active.readiness() {
                Readiness::Cancelled => {
                    if let Some(done) = slot.take() {
                        cache.keep(seq, done.finish(FinishReason::CANCELLED));
                    }
                }
                Readiness::Unanswered => waiting = true,
                Readiness::Ready => ready.push(seq),
            }
        }
        let (prompting, generating): (Vec<usize>, Vec<usize>) = ready
            .into_iter()
            .partition(|&seq| slots[seq].as_ref().is_some_and(Slot::prompting));
        // One batch with the last sampled token of every generating slot, then each prompt's
        // next chunk in a batch of its own (see `PROMPT_CHUNK`).
        let mut step = Step {
            model,
            ctx: &mut ctx,
            batch: &mut batch,
            slots: &mut slots,
            cache: &mut cache,
        };
        let mut worked = !generating.is_empty() && step.run(&generating, n_batch as usize);
        for seq in prompting {
            worked |= step.run(&[seq], PROMPT_CHUNK);
        }
        if !worked && waiting {
            std::thread::park_timeout(IDLE_POLL);
        }
    }
}

/// One decode call over some slots, and what follows it.
struct Step<'a, 'ctx> {
    model: &'a LlamaModel,
    ctx: &'a mut llama_cpp_2::context::LlamaContext<'ctx>,
    batch: &'a mut LlamaBatch<'static>,
    slots: &'a mut [Option<Slot>],
    cache: &'a mut PromptCache,
}

impl Step<'_, '_> {
    /// Feeds `members` into one batch of at most `budget` tokens, decodes it, and samples
    /// the slots whose prompt ended or who are generating. Returns whether anything was
    /// decoded.
    fn run(&mut self, members: &[usize], budget: usize) -> bool {
        self.batch.clear();
        let mut budget = budget;
        let mut sampled_at: Vec<(usize, i32)> = Vec::new();
        for &seq in members {
            let Some(active) = self.slots[seq].as_mut() else {
                continue;
            };
            match active.feed(self.batch, &mut budget) {
                Ok(Some(index)) => sampled_at.push((seq, index)),
                Ok(None) => {}
                Err(e) => {
                    if let Some(done) = self.slots[seq].take() {
                        done.fail(e);
                    }
                    // Tokens it added before failing are still decoded with this batch:
                    // the next request on this sequence clears it from position 0.
                    self.cache.forget(seq);
                }
            }
        }
        if self.batch.n_tokens() == 0 {
            return false;
        }
        if let Err(e) = self.ctx.decode(self.batch) {
            for &seq in members {
                if let Some(active) = self.slots[seq].take() {
                    active.fail(Error::runtime(format!("llama.cpp failed to decode: {e}")));
                }
                let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
                self.cache.forget(seq);
            }
            return true;
        }
        let single = self.batch.n_tokens() < 2;
        for &seq in members {
            if let Some(active) = self.slots[seq].as_mut() {
                active.decoded(single);
            }
        }
        for (seq, index) in sampled_at {
            let Some(active) = self.slots[seq].as_mut() else {
                continue;
            };
            if let SlotStep::Finished(reason) = active.sample(self.model, self.ctx, index) {
                if let Some(done) = self.slots[seq].take() {
                    self.cache.keep(seq, done.finish(reason));
                }
            }
        }
        true
    }
}
