//! Worker tests on a stand-in model ([`Fake`]): callers that went away, batching.

use super::*;
use cyxwiz_sdk::{TensorSpec, TensorView};
use std::sync::{mpsc as std_mpsc, Mutex};
use std::time::Duration;

/// Each call's first input: its shape and values.
pub(crate) type Calls = Arc<Mutex<Vec<(Vec<i64>, Vec<f64>)>>>;

/// A stand-in model: echoes float inputs (`x` to `y`), or for `input_ids` returns hidden
/// states `[batch, seq, 2]` of (id, 1.0) per token. A call holding the value `block` waits
/// until the test sends on its gate. Every call's first input shape is recorded.
pub(crate) struct Fake {
    pub info: ModelInfo,
    pub calls: Calls,
    pub block: f64,
    pub started: Mutex<std_mpsc::Sender<()>>,
    pub gate: Mutex<std_mpsc::Receiver<()>>,
}

/// The fake, its call log, a receiver told when a blocking call starts, and its gate.
pub(crate) fn fake(
    inputs: &[(&str, DType)],
    block: f64,
) -> (Fake, Calls, std_mpsc::Receiver<()>, std_mpsc::Sender<()>) {
    let spec = |name: &str, dtype| TensorSpec {
        name: name.to_string(),
        dtype,
        shape: vec![-1, -1],
    };
    let info = ModelInfo {
        inputs: inputs.iter().map(|(n, d)| spec(n, *d)).collect(),
        outputs: vec![spec("y", DType::F32)],
        capabilities: Capabilities::TENSOR_INFERENCE,
        ..ModelInfo::default()
    };
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (started_tx, started_rx) = std_mpsc::channel();
    let (gate_tx, gate_rx) = std_mpsc::channel();
    let fake = Fake {
        info,
        calls: calls.clone(),
        block,
        started: Mutex::new(started_tx),
        gate: Mutex::new(gate_rx),
    };
    (fake, calls, started_rx, gate_tx)
}

fn values(view: &TensorView<'_>) -> Vec<f64> {
    match view.dtype {
        DType::F32 => view
            .data
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        DType::I64 => view
            .data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f64)
            .collect(),
        _ => Vec::new(),
    }
}

impl Backend for Fake {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, PluginError> {
        let first = &inputs[0];
        let vals = values(first);
        self.calls
            .lock()
            .unwrap()
            .push((first.shape.to_vec(), vals.clone()));
        if vals.contains(&self.block) {
            self.started.lock().unwrap().send(()).unwrap();
            self.gate.lock().unwrap().recv().unwrap();
        }
        if first.name == "input_ids" {
            let hidden: Vec<f32> = vals.iter().flat_map(|v| [*v as f32, 1.0]).collect();
            let mut shape = first.shape.to_vec();
            shape.push(2);
            return Ok(vec![Tensor::from_f32("y", shape, &hidden)]);
        }
        let out: Vec<f32> = vals.iter().map(|v| *v as f32).collect();
        Ok(vec![Tensor::from_f32("y", first.shape.to_vec(), &out)])
    }
}

fn row(v: f32) -> Vec<Tensor> {
    vec![Tensor::from_f32("x", vec![1, 2], &[v, v])]
}

/// Submits `inputs` as the async `infer` does, handing back the reply receiver.
fn submit(
    worker: &ModelWorker,
    inputs: Vec<Tensor>,
) -> oneshot::Receiver<Result<Vec<Tensor>, PluginError>> {
    let (reply, rx) = worker.reply_channel();
    worker.submit(Work::Infer { inputs, reply }).unwrap();
    rx
}

fn wait_idle(worker: &ModelWorker) {
    for _ in 0..500 {
        if worker.in_flight() == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} requests still in flight", worker.in_flight());
}

#[test]
fn queued_requests_of_callers_that_went_away_never_run() {
    // One worker, batching on (max_batch 4) and off (1): the dropped request must not
    // reach the model either way.
    for max_batch in [1, 4] {
        let (model, calls, started, gate) = fake(&[("x", DType::F32)], 99.0);
        let worker =
            ModelWorker::spawn("m", "test", Engine::Plain(model), 1, 8, max_batch).unwrap();
        let busy = submit(&worker, row(99.0));
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        // The attack: queue requests, then disconnect (the handler drops its receiver).
        // Live requests sit before and after them, so a batch gathers across them.
        let first = submit(&worker, row(5.0));
        for v in [1.0, 2.0, 3.0] {
            drop(submit(&worker, row(v)));
        }
        let last = submit(&worker, row(4.0));
        gate.send(()).unwrap();
        assert_eq!(busy.blocking_recv().unwrap().unwrap()[0].shape, vec![1, 2]);
        assert_eq!(
            first.blocking_recv().unwrap().unwrap()[0].data,
            row(5.0)[0].data
        );
        assert_eq!(
            last.blocking_recv().unwrap().unwrap()[0].data,
            row(4.0)[0].data
        );
        let ran: Vec<Vec<f64>> = calls.lock().unwrap().iter().map(|c| c.1.clone()).collect();
        let expected: Vec<Vec<f64>> = if max_batch == 1 {
            vec![vec![99.0; 2], vec![5.0; 2], vec![4.0; 2]]
        } else {
            vec![vec![99.0; 2], vec![5.0, 5.0, 4.0, 4.0]]
        };
        assert_eq!(ran, expected, "max_batch {max_batch}");
        wait_idle(&worker);
        assert_eq!(worker.stats().answered, 6);
    }
}

#[test]
fn batched_embedding_jobs_of_callers_that_went_away_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let (pipeline, calls, started, gate) = crate::models::embedding::tests::pipeline(dir.path());
    let worker =
        ModelWorker::spawn("e", "test", Engine::Embedding(Box::new(pipeline)), 1, 8, 64).unwrap();
    let embed = |ids: Vec<Vec<u32>>| {
        let (reply, rx) = worker.reply_channel();
        worker
            .submit(Work::Embed {
                input: EmbedInput::Tokens(ids),
                max_batch_tokens: 1024,
                reply,
            })
            .unwrap();
        rx
    };
    let busy = embed(vec![vec![3]]);
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    let first = embed(vec![vec![1]]);
    drop(embed(vec![vec![2, 2], vec![2]]));
    let last = embed(vec![vec![1, 1]]);
    gate.send(()).unwrap();
    assert_eq!(busy.blocking_recv().unwrap().unwrap().data, vec![3.0, 1.0]);
    assert_eq!(first.blocking_recv().unwrap().unwrap().data, vec![1.0, 1.0]);
    assert_eq!(last.blocking_recv().unwrap().unwrap().data, vec![1.0, 1.0]);
    let ran: Vec<Vec<f64>> = calls.lock().unwrap().iter().map(|c| c.1.clone()).collect();
    // One run for the blocking job, then one for both live jobs (padded to 2 tokens).
    assert_eq!(ran, vec![vec![3.0], vec![1.0, 1.0, 1.0, 0.0]]);
    wait_idle(&worker);
}

#[test]
fn abandoned_work_is_recognised_for_every_kind() {
    let counters = Arc::new(Counters::default());
    fn reply<T>(counters: &Arc<Counters>) -> (Reply<T>, oneshot::Receiver<Result<T, PluginError>>) {
        let (tx, rx) = oneshot::channel();
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        let counted = InFlight {
            counters: counters.clone(),
            since: std::time::Instant::now(),
        };
        (
            Reply {
                tx,
                _counted: counted,
            },
            rx,
        )
    }
    let (r, rx) = reply(&counters);
    let infer = Work::Infer {
        inputs: Vec::new(),
        reply: r,
    };
    assert!(!infer.abandoned());
    drop(rx);
    assert!(infer.abandoned());

    let (r, rx) = reply::<()>(&counters);
    let (tx, pieces) = stream::channel(1);
    let generate = Work::Generate {
        request: GenerateRequest::default(),
        index: 0,
        pieces: tx,
        _counted: r._counted,
    };
    assert!(!generate.abandoned());
    drop(pieces);
    assert!(generate.abandoned(), "dropping the pieces cancels");
    drop((r.tx, rx));

    let (r, rx) = reply(&counters);
    let embed = Work::Embed {
        input: EmbedInput::Tokens(vec![vec![1]]),
        max_batch_tokens: 1,
        reply: r,
    };
    assert!(!embed.abandoned());
    drop(rx);
    assert!(embed.abandoned());
    drop((infer, generate, embed));
    assert_eq!(counters.in_flight.load(Ordering::Relaxed), 0);
}

/// A stand-in LLM: emits `pieces` numbered pieces (`"0 "`, `"1 "`, ...) unless its sink says
/// stop; counts what it emitted.
struct Talker {
    info: ModelInfo,
    pieces: u32,
    emitted: Arc<AtomicUsize>,
}

fn talker(pieces: u32) -> (Talker, Arc<AtomicUsize>) {
    let emitted = Arc::new(AtomicUsize::new(0));
    let info = ModelInfo {
        capabilities: Capabilities::TEXT_GENERATION,
        ..ModelInfo::default()
    };
    let model = Talker {
        info,
        pieces,
        emitted: emitted.clone(),
    };
    (model, emitted)
}

impl Backend for Talker {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn infer(&self, _: &[TensorView<'_>]) -> Result<Vec<Tensor>, PluginError> {
        Err(PluginError::unsupported("text only"))
    }

    fn generate(
        &self,
        _: &GenerateRequest,
        sink: &mut dyn cyxwiz_sdk::TokenSink,
    ) -> Result<cyxwiz_sdk::GenerateOutput, PluginError> {
        let mut made = 0;
        for i in 0..self.pieces {
            self.emitted.fetch_add(1, Ordering::Relaxed);
            made += 1;
            if !sink.emit(&format!("{i} ")) {
                break;
            }
        }
        Ok(cyxwiz_sdk::GenerateOutput {
            finish_reason: cyxwiz_sdk::FinishReason::LENGTH,
            prompt_tokens: 1,
            completion_tokens: made,
            cached_tokens: 0,
        })
    }
}

#[test]
fn choices_stream_on_one_bounded_channel_and_each_ends_with_done() {
    // 200 pieces per choice, far beyond the channel's room (32 per choice): the workers wait
    // for the reader instead of buffering without bound, and nothing is lost.
    let (model, emitted) = talker(200);
    let worker = ModelWorker::spawn("llm", "test", Engine::Plain(model), 2, 8, 1).unwrap();
    let mut pieces = worker
        .generate(vec![GenerateRequest::default(); 2])
        .unwrap();
    assert_eq!(pieces.max_capacity(), 2 * stream::PIECES_PER_CHOICE);
    let mut texts = vec![String::new(); 2];
    let mut done = [false; 2];
    while let Some(piece) = pieces.blocking_recv() {
        match piece {
            Piece::Text(i, t) => {
                assert!(!done[i], "text after Done");
                texts[i].push_str(&t);
            }
            Piece::Done(i, out) => {
                done[i] = true;
                assert_eq!(out.unwrap().completion_tokens, 200);
            }
        }
    }
    let expected: String = (0..200).map(|i| format!("{i} ")).collect();
    assert_eq!(texts, vec![expected.clone(), expected]);
    assert_eq!(done, [true; 2]);
    assert_eq!(emitted.load(Ordering::Relaxed), 400);
    wait_idle(&worker);
}

#[test]
fn dropping_the_receiver_mid_stream_cancels_and_frees_the_worker() {
    let (model, emitted) = talker(1_000_000);
    let worker = ModelWorker::spawn("llm", "test", Engine::Plain(model), 1, 8, 1).unwrap();
    let mut pieces = worker.generate(vec![GenerateRequest::default()]).unwrap();
    for _ in 0..5 {
        assert!(matches!(pieces.blocking_recv(), Some(Piece::Text(0, _))));
    }
    drop(pieces);
    // The worker, blocked on the full channel or about to send, stops at its next piece.
    wait_idle(&worker);
    let made = emitted.load(Ordering::Relaxed);
    assert!(made < 100, "{made} pieces made for a caller that left");
    // And it is free: the next request runs to its end.
    let mut next = worker.generate(vec![GenerateRequest::default()]).unwrap();
    assert!(matches!(next.blocking_recv(), Some(Piece::Text(0, t)) if t == "0 "));
}

#[test]
fn a_worker_waits_for_a_slow_reader_but_not_for_one_that_stopped_reading() {
    let (tx, mut rx) = stream::channel(1);
    let tx = tx.with_stall(Duration::from_millis(300));
    for i in 0..stream::PIECES_PER_CHOICE {
        assert!(tx.send(Piece::Text(0, i.to_string())), "room for {i}");
    }
    // Full: a reader that takes a piece within the limit lets the send through.
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        assert!(rx.blocking_recv().is_some());
        rx
    });
    let start = std::time::Instant::now();
    assert!(tx.send(Piece::Text(0, "late".into())));
    assert!(start.elapsed() >= Duration::from_millis(50));
    let rx = reader.join().unwrap();
    // Full again and nobody reads: the send gives up after the limit (not forever).
    let start = std::time::Instant::now();
    assert!(!tx.send(Piece::Text(0, "stalled".into())));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // A reader that goes away wakes a waiting send at once, long before the limit.
    let tx = tx.with_stall(Duration::from_secs(60));
    let dropper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(rx);
    });
    let start = std::time::Instant::now();
    assert!(!tx.send(Piece::Text(0, "gone".into())));
    assert!(start.elapsed() < Duration::from_secs(5));
    dropper.join().unwrap();
    assert!(tx.is_closed());
}
