//! Continuous batching on SmolLM2: four concurrent greedy streams, decoded in shared batches,
//! give exactly the text each gives alone (no sequence sees another's tokens).
//!
//! How much faster the shared batches are is a benchmark's question (`benches/tokens.rs`
//! compares the throughput at equal thread counts), not asserted here: a wall-time ratio in a
//! test fails whenever the machine is busy with something else. The times are printed.
#![allow(clippy::unwrap_used)]

mod common;

use common::{greedy, load_with, run};
use cyxwiz_plugin_host::LoadedModel;
use cyxwiz_sdk::{serde_json::json, GenerateRequest};
use std::time::Instant;

fn load() -> LoadedModel {
    // Batches of several tokens run on two threads; single-stream decoding on one.
    load_with(json!({"slots": 4, "context_length": 512, "queue": 16, "threads_batch": 2}))
}

const PROMPTS: [&str; 4] = [
    "Once upon a time, in a land far away,",
    "The recipe for a good pancake starts with",
    "In the year 2050, cities will",
    "The most important rule of programming is",
];

#[test]
fn concurrent_streams_in_shared_batches_do_not_leak_into_each_other() {
    let model = load();
    let requests: Vec<GenerateRequest> = PROMPTS.iter().map(|p| greedy(p, 48)).collect();

    let started = Instant::now();
    let alone: Vec<String> = requests.iter().map(|r| run(&model, r).0).collect();
    let sequential = started.elapsed();

    let started = Instant::now();
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .iter()
            .map(|r| s.spawn(|| run(&model, r).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let concurrent = started.elapsed();

    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        // Greedy decoding of the same prompt: the same text whether alone or in a batch
        // with three other sequences, so no sequence saw another's tokens.
        assert_eq!(a, t, "prompt {i} changed when batched");
    }
    println!("4 sequential: {sequential:?}, 4 concurrent: {concurrent:?}");
}
