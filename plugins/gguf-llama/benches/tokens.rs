//! Tokens per second of gguf-llama on SmolLM2-135M (Q4_1): 1 and 4 concurrent streams, decode
//! and batch thread counts of 1 and 2 and the default adaptive threads, on a quiet machine
//! and on one kept busy by two spinning processes.
//! Prints a table. llama.cpp itself is always compiled in Release mode, so
//! `cargo bench -p cyxwiz-plugin-gguf-llama --bench tokens --profile dev` measures the same
//! native code as a release build without a second llama.cpp compile.

use cyxwiz_plugin_gguf_llama::{GgufLlama, LlamaLm};
use cyxwiz_sdk::{
    serde_json::json, GenerateRequest, LoadOptions, Model as _, Plugin as _, SamplingParams,
};
use std::{process::Child, time::Instant};

const PROMPTS: [&str; 4] = [
    "Write a long story about a dragon who learns to cook.",
    "Explain in detail how a steam engine works.",
    "Describe a walk through a busy market in a big city.",
    "List everything you would pack for a month-long hiking trip and why.",
];
const TOKENS: u32 = 96;

fn request(prompt: &str) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.into(),
        params: SamplingParams {
            max_tokens: TOKENS,
            temperature: 0.0,
            ..SamplingParams::default()
        },
        ..GenerateRequest::default()
    }
}

/// Generated tokens per second over all streams, and the slowest stream's time to first token.
fn measure(model: &LlamaLm, streams: usize) -> (f64, f64) {
    let started = Instant::now();
    let results: Vec<(u32, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = PROMPTS[..streams]
            .iter()
            .map(|p| {
                s.spawn(move || {
                    let mut first = None;
                    let out = model
                        .generate(&request(p), &mut |_: &str| {
                            first.get_or_insert_with(|| started.elapsed().as_secs_f64());
                            true
                        })
                        .expect("generate");
                    (out.completion_tokens, first.unwrap_or(0.0))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("stream"))
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let tokens: u32 = results.iter().map(|(t, _)| t).sum();
    let ttft = results.iter().map(|(_, f)| *f).fold(0.0, f64::max);
    (tokens as f64 / wall, ttft)
}

fn busy(n: usize) -> Vec<Child> {
    (0..n)
        .map(|_| {
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("spawn a busy loop")
        })
        .collect()
}

fn main() {
    let path = cyxwiz_e2e::models_dir().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    println!("| machine | threads (decode / batch) | streams | tokens/s (all streams) | tokens/s per stream | slowest first token (ms) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for loaded in [false, true] {
        let mut hogs = if loaded { busy(2) } else { Vec::new() };
        // The load monitor samples once a second: let it see the new state first.
        std::thread::sleep(std::time::Duration::from_millis(2500));
        // (0, None): the default, threads adapted to the load; the others are fixed.
        for (threads, threads_batch) in [(1u32, Some(1u32)), (1, Some(2)), (2, Some(2)), (0, None)]
        {
            let mut options = json!({"slots": 4, "context_length": 512});
            if let Some(n) = threads_batch {
                options["threads_batch"] = json!(n);
            }
            let model = GgufLlama
                .load(
                    &path,
                    &LoadOptions {
                        threads,
                        options,
                        ..LoadOptions::default()
                    },
                )
                .expect("load SmolLM2");
            let label = match threads_batch {
                Some(b) => format!("{threads} / {b}"),
                None => "adaptive (default)".to_string(),
            };
            let _ = measure(&model, 1); // warm-up
            for streams in [1usize, 4] {
                let (rate, ttft) = measure(&model, streams);
                println!(
                    "| {} | {label} | {streams} | {rate:.1} | {:.1} | {:.0} |",
                    if loaded {
                        "busy (2 spinning processes)"
                    } else {
                        "quiet"
                    },
                    rate / streams as f64,
                    ttft * 1e3
                );
            }
        }
        for hog in &mut hogs {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}
