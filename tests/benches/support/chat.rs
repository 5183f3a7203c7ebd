//! The chat servers the LLM benches compare and the streaming client they share: the node or
//! llama.cpp's `llama-server` as a child process killed on drop, where the llama-server binary
//! is, and one streamed `/v1/chat/completions` measured from the client's side (first content
//! chunk, end, the server's own token counts).

use super::{http::body_lines, wait_healthy};
use cyxwiz_sdk::serde_json;
use std::{
    io::Write,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A server process that is killed when dropped.
pub struct Server {
    pub name: String,
    pub addr: String,
    pub child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `bin run` with `config` (HTTP API on a free port, no gRPC) and data directory
/// `data`, and waits until its `/health` answers 200 (its deployments loaded).
pub fn spawn_node(bin: &Path, config: &Path, data: &Path, name: String) -> Server {
    let port = free_port();
    let child = Command::new(bin)
        .args(["run", "--grpc-ports", "off", "--api-port"])
        .arg(port.to_string())
        .arg("--config")
        .arg(config)
        .env("CYXWIZ_DATA_DIR", data)
        .env("CYXWIZ_LOG_LEVEL", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let server = Server {
        name,
        addr: format!("127.0.0.1:{port}"),
        child,
    };
    wait_healthy(&server.addr, "the node");
    server
}

/// Where `scripts/build-llama-server` leaves llama-server (`CYXWIZ_LLAMA_SERVER` overrides),
/// built or not.
pub fn llama_server_path() -> PathBuf {
    if let Some(bin) = std::env::var_os("CYXWIZ_LLAMA_SERVER") {
        return PathBuf::from(bin);
    }
    let dir = std::env::var_os("CYXWIZ_LLAMA_SERVER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/cyxwiz-llama-server")
        });
    dir.join("build/bin/llama-server")
}

/// The llama-server binary, built by `scripts/build-llama-server` first if needed (about ten
/// minutes, once).
pub fn llama_server_bin() -> PathBuf {
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

/// Starts llama-server on `gguf` with `threads` threads and `slots` parallel sequences of
/// 2048 tokens each (the node's default context per slot), and waits for its `/health`.
pub fn llama_server(bin: &Path, gguf: &Path, threads: u32, slots: usize) -> Server {
    let port = free_port();
    // -c is the whole context, split between the -np slots.
    let child = Command::new(bin)
        .arg("-m")
        .arg(gguf)
        .args(["-t", &threads.to_string(), "-tb", &threads.to_string()])
        .args(["-np", &slots.to_string(), "-c", &(2048 * slots).to_string()])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("llama-server starts");
    let server = Server {
        name: format!("llama.cpp llama-server, {threads} threads"),
        addr: format!("127.0.0.1:{port}"),
        child,
    };
    wait_healthy(&server.addr, "llama-server");
    server
}

/// The messages of a one-turn chat.
pub fn user(prompt: &str) -> serde_json::Value {
    serde_json::json!([{"role": "user", "content": prompt}])
}

/// A streamed, greedy chat request with a usage chunk at the end. `cache_prompt` is
/// llama-server's switch for reusing a slot's cached prompt (on by default there); `None`
/// leaves it out.
pub fn chat_body(
    messages: &serde_json::Value,
    max_tokens: u32,
    cache_prompt: Option<bool>,
) -> String {
    let mut body = serde_json::json!({
        "model": "chat",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(cache) = cache_prompt {
        body["cache_prompt"] = cache.into();
    }
    body.to_string()
}

/// What a client saw of one streamed chat completion.
pub struct Streamed {
    /// The server's `usage.completion_tokens`.
    pub completion_tokens: u64,
    /// The server's `usage.prompt_tokens`.
    pub prompt_tokens: Option<u64>,
    /// Prompt tokens the server took from its cache: `usage.prompt_tokens_details.
    /// cached_tokens` (OpenAI's field), else llama-server's `timings.cache_n`.
    pub cached_tokens: Option<u64>,
    /// From `started` to the first chunk with content.
    pub first: Duration,
    /// From `started` to the end of the stream.
    pub end: Duration,
}

impl Streamed {
    /// Tokens per second after the first one: the decode rate this stream saw.
    pub fn decode_rate(&self) -> f64 {
        let decoding = (self.end - self.first).as_secs_f64();
        self.completion_tokens.saturating_sub(1) as f64 / decoding.max(1e-9)
    }
}

/// One streamed chat completion of `body` (see `chat_body`) on a new connection; times count
/// from `started`.
pub fn stream_chat(addr: &str, body: &str, started: Instant) -> Streamed {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let (mut tokens, mut prompt_tokens, mut cached, mut first) = (None, None, None, None);
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
            first.get_or_insert_with(|| started.elapsed());
        }
        let usage = &event["usage"];
        if let Some(n) = usage["completion_tokens"].as_u64() {
            tokens = Some(n);
            prompt_tokens = usage["prompt_tokens"].as_u64();
        }
        if let Some(n) = usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .or_else(|| event["timings"]["cache_n"].as_u64())
        {
            cached = Some(n);
        }
    });
    Streamed {
        completion_tokens: tokens.expect("usage in the last chunk"),
        prompt_tokens,
        cached_tokens: cached,
        first: first.expect("some content"),
        end: started.elapsed(),
    }
}
