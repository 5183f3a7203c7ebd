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

use cyxwiz_sdk::serde_json;
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use support::{target_dir, wait_healthy};

const SLOTS: usize = 4;
const MAX_TOKENS: u32 = 96;
const RUNS: usize = 3;
const PROMPTS: [&str; 4] = [
    "Write a long story about a dragon who learns to cook.",
    "Explain in detail how a steam engine works.",
    "Describe a walk through a busy market in a big city.",
    "List everything you would pack for a month-long hiking trip and why.",
];

/// A server process that is killed when dropped.
struct Server {
    name: String,
    addr: String,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

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
    let port = free_port();
    let child = Command::new(target_dir().join("cyxwiz-node"))
        .args(["run", "--grpc-ports", "off", "--api-port"])
        .arg(port.to_string())
        .arg("--config")
        .arg(&config)
        .env("CYXWIZ_DATA_DIR", data.join(format!("data-{threads}")))
        .env("CYXWIZ_LOG_LEVEL", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let addr = format!("127.0.0.1:{port}");
    let name = if threads == 0 {
        "node (gguf-llama), adaptive threads".to_string()
    } else {
        format!("node (gguf-llama), {threads} threads")
    };
    let server = Server { name, addr, child };
    wait_healthy(&server.addr, "the node");
    server
}

fn llama_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CYXWIZ_LLAMA_SERVER") {
        return PathBuf::from(bin);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-llama-server");
    let out = Command::new(script)
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/build-llama-server runs");
    assert!(out.status.success(), "scripts/build-llama-server failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn llama_server(bin: &Path, gguf: &Path, threads: u32) -> Server {
    let port = free_port();
    // -c is the whole context, split between the -np slots: 2048 tokens each, as the node's.
    let child = Command::new(bin)
        .arg("-m")
        .arg(gguf)
        .args(["-t", &threads.to_string(), "-tb", &threads.to_string()])
        .args(["-np", &SLOTS.to_string(), "-c", &(2048 * SLOTS).to_string()])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("llama-server starts");
    let addr = format!("127.0.0.1:{port}");
    let server = Server {
        name: format!("llama.cpp llama-server, {threads} threads"),
        addr,
        child,
    };
    wait_healthy(&server.addr, "llama-server");
    server
}

/// Reads an HTTP/1.1 response body, chunked or not, handing each complete line to `line`.
fn body_lines(stream: TcpStream, mut line: impl FnMut(&str)) {
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    let mut chunked = false;
    loop {
        header.clear();
        reader.read_line(&mut header).expect("header");
        let h = header.trim().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        chunked |= h.starts_with("transfer-encoding:") && h.contains("chunked");
    }
    if !chunked {
        for l in reader.lines() {
            line(&l.expect("line"));
        }
        return;
    }
    let mut pending = Vec::new();
    let mut flush = |pending: &mut Vec<u8>| {
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let text: Vec<u8> = pending.drain(..=end).collect();
            line(String::from_utf8_lossy(&text).trim_end());
        }
    };
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).expect("chunk size");
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).expect("chunk");
        chunk.truncate(size);
        pending.extend_from_slice(&chunk);
        flush(&mut pending);
    }
    pending.push(b'\n');
    flush(&mut pending);
}

/// One streamed chat completion: (completion tokens, seconds to the first content chunk).
fn stream_chat(addr: &str, prompt: &str, started: Instant) -> (u64, f64) {
    let body = serde_json::json!({
        "model": "chat",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": true,
        "stream_options": {"include_usage": true},
        // llama-server reuses a slot's cached prompt by default; the node has no prompt cache,
        // so both prefill every prompt (the node ignores the field).
        "cache_prompt": false,
    })
    .to_string();
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let (mut tokens, mut first) = (None, None);
    body_lines(stream, |line| {
        let Some(data) = line.strip_prefix("data: ") else {
            return;
        };
        if data == "[DONE]" {
            return;
        }
        let event: serde_json::Value = serde_json::from_str(data).expect("event json");
        let content = &event["choices"][0]["delta"]["content"];
        if content.as_str().is_some_and(|c| !c.is_empty()) {
            first.get_or_insert_with(|| started.elapsed().as_secs_f64());
        }
        if let Some(n) = event["usage"]["completion_tokens"].as_u64() {
            tokens = Some(n);
        }
    });
    (
        tokens.expect("usage in the last chunk"),
        first.expect("some content"),
    )
}

/// Tokens/s over all streams and the slowest first token (ms): the median run of RUNS.
fn measure(server: &Server, streams: usize) -> (f64, f64) {
    let mut runs: Vec<(f64, f64)> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let results: Vec<(u64, f64)> = std::thread::scope(|s| {
                let handles: Vec<_> = PROMPTS[..streams]
                    .iter()
                    .map(|p| s.spawn(|| stream_chat(&server.addr, p, started)))
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
                    0 => llama_server(&bin, &gguf, 2),
                    1 => node(&gguf, data.path(), 2),
                    _ => node(&gguf, data.path(), 0),
                };
                stream_chat(&server.addr, PROMPTS[0], Instant::now()); // warm-up
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
