//! The node against llama.cpp's own `llama-server` on the same model, in one run: streamed
//! `/v1/chat/completions` on SmolLM2-135M (Q4_1), greedy, 1 and 4 concurrent streams, 4 slots
//! on both, on a quiet machine and on one kept busy by two spinning processes. The node runs
//! with its default adaptive threads and with 2 fixed threads (llama-server's setting here).
//! Tokens are the servers' own `usage.completion_tokens`; the first token is the first content
//! chunk a client sees.
//!
//! llama-server is built from the llama.cpp vendored in the llama-cpp-python sdist by
//! `scripts/build-llama-server` (`CYXWIZ_LLAMA_SERVER` overrides the binary). Run after
//! `cargo build --workspace`:
//! `cargo bench -p cyxwiz-e2e --bench llama_server --profile dev` (llama.cpp is compiled in
//! Release mode in every cargo profile; the host's HTTP path is not the bottleneck, see the
//! `api` bench).

mod support;

use std::{
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};
use support::{
    chat::{chat_body, llama_server, llama_server_bin, spawn_node, stream_chat, user, Server},
    target_dir,
};

const SLOTS: usize = 4;
const MAX_TOKENS: u32 = 96;
const RUNS: usize = 3;
const PROMPTS: [&str; 4] = [
    "Write a long story about a dragon who learns to cook.",
    "Explain in detail how a steam engine works.",
    "Describe a walk through a busy market in a big city.",
    "List everything you would pack for a month-long hiking trip and why.",
];

fn node(gguf: &Path, data: &Path, threads: u32) -> Server {
    let config = data.join(format!("node-{threads}.toml"));
    std::fs::write(
        &config,
        format!(
            "[[deployments]]\nname = \"chat\"\npath = \"{}\"\nthreads = {threads}\n\
             options = {{ slots = {SLOTS}, context_length = 2048 }}\n",
            gguf.display()
        ),
    )
    .expect("config");
    let name = if threads == 0 {
        "node (gguf-llama), adaptive threads".to_string()
    } else {
        format!("node (gguf-llama), {threads} threads")
    };
    let bin = target_dir().join("cyxwiz-node");
    spawn_node(&bin, &config, &data.join(format!("data-{threads}")), name)
}

/// One streamed chat completion of `prompt`: (completion tokens, seconds to the first content
/// chunk). llama-server reuses a slot's cached prompt by default; the node had no prompt cache
/// when this bench was written, so both prefill every prompt (the node ignores the field).
fn chat(addr: &str, prompt: &str, started: Instant) -> (u64, f64) {
    let body = chat_body(&user(prompt), MAX_TOKENS, Some(false));
    let out = stream_chat(addr, &body, started);
    (out.completion_tokens, out.first.as_secs_f64())
}

/// Tokens/s over all streams and the slowest first token (ms): the median run of RUNS.
fn measure(server: &Server, streams: usize) -> (f64, f64) {
    let mut runs: Vec<(f64, f64)> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let results: Vec<(u64, f64)> = std::thread::scope(|s| {
                let handles: Vec<_> = PROMPTS[..streams]
                    .iter()
                    .map(|p| s.spawn(|| chat(&server.addr, p, started)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("stream"))
                    .collect()
            });
            let wall = started.elapsed().as_secs_f64();
            let tokens: u64 = results.iter().map(|(t, _)| t).sum();
            let first = results.iter().map(|(_, f)| *f).fold(0.0, f64::max);
            (tokens as f64 / wall, first * 1000.0)
        })
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    runs[RUNS / 2]
}

fn busy(n: usize) -> Vec<Child> {
    (0..n)
        .map(|_| {
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("spawn a busy loop")
        })
        .collect()
}

fn main() {
    let gguf = cyxwiz_e2e::models_dir().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let bin = llama_server_bin();
    let data = tempfile::tempdir().expect("tempdir");
    println!(
        "## SmolLM2-135M Q4_1, streamed /v1/chat/completions, {MAX_TOKENS} tokens, greedy, {SLOTS} slots, median of {RUNS}"
    );
    println!("| machine | server | streams | tokens/s (all streams) | vs llama-server | slowest first token (ms) |");
    println!("|---|---|---:|---:|---:|---:|");
    let conditions: &[bool] = match std::env::var("CYXWIZ_BENCH_MACHINE").as_deref() {
        Ok("quiet") => &[false],
        Ok("busy") => &[true],
        _ => &[false, true],
    };
    for &loaded in conditions {
        let machine = if loaded {
            "busy (2 spinning processes)"
        } else {
            "quiet"
        };
        for streams in [1, 4] {
            // One server at a time, so none competes with another for the cores.
            let mut rows = Vec::new();
            for start in 0..3 {
                let server = match start {
                    0 => llama_server(&bin, &gguf, 2, SLOTS),
                    1 => node(&gguf, data.path(), 2),
                    _ => node(&gguf, data.path(), 0),
                };
                chat(&server.addr, PROMPTS[0], Instant::now()); // warm-up
                let spinners = if loaded { busy(2) } else { Vec::new() };
                // Give the node's load monitor its one-second window on the new load.
                std::thread::sleep(Duration::from_millis(1500));
                let (rate, first) = measure(&server, streams);
                for mut s in spinners {
                    let _ = s.kill();
                    let _ = s.wait();
                }
                rows.push((server.name.clone(), rate, first));
            }
            let reference = rows[0].1;
            for (name, rate, first) in rows {
                println!(
                    "| {machine} | {name} | {streams} | {rate:.1} | {:.2}x | {first:.0} |",
                    rate / reference
                );
            }
        }
    }
}
