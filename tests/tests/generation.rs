//! Text generation over HTTP on the real binary and SmolLM2, on a 1-slot deployment: a client
//! that drops its stream frees the slot for the next request at once, and the sampling
//! parameters do what they say (`seed` makes temperature sampling reproducible, different
//! seeds differ, `n = 2` gives two different choices, streamed and plain answers agree).

mod common;

use common::{models_dir, Node, Running};
use serde_json::{json, Value};
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

/// The second request's first token must arrive within this after the first client left.
/// Not cancelled, the first request (4000 tokens; SmolLM2 makes at most ~100 tokens/s on
/// this machine's 2 cores) would hold the only slot for 40 s or more.
const FREED_WITHIN: Duration = Duration::from_secs(15);

fn start_node() -> (Node, Running) {
    let node = Node::new();
    let gguf = models_dir().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    node.write_config(&format!(
        r#"
[[deployments]]
name = "chat"
path = "{}"
threads = 2
options = {{ slots = 1, context_length = 8192 }}
"#,
        gguf.display()
    ));
    let running = node.start(&[]);
    common::wait_ready(&running);
    (node, running)
}

/// Sends a request without reading the answer.
fn send(addr: &str, path: &str, body: &Value) -> TcpStream {
    let body = body.to_string();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream
}

/// POSTs JSON and parses the JSON answer, which must be a 200.
fn post(addr: &str, path: &str, body: &Value) -> Value {
    let mut response = String::new();
    send(addr, path, body)
        .read_to_string(&mut response)
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    serde_json::from_str(body).unwrap()
}

/// The `data:` chunks of a streamed chat answer, read until `[DONE]`, with the time from
/// `since` to the first one carrying text.
fn stream_chunks(stream: TcpStream, since: Instant) -> (Vec<Value>, Option<Duration>) {
    let mut chunks = Vec::new();
    let mut first_text = None;
    for line in BufReader::new(stream).lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            return (chunks, first_text);
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        let text = chunk["choices"][0]["delta"]["content"].as_str();
        if first_text.is_none() && text.is_some_and(|t| !t.is_empty()) {
            first_text = Some(since.elapsed());
        }
        chunks.push(chunk);
    }
    panic!("the stream ended without [DONE]: {chunks:?}");
}

fn chat(prompt: &str, max_tokens: u32) -> Value {
    json!({
        "model": "chat",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    })
}

#[test]
fn a_dropped_stream_frees_the_only_slot_for_the_next_request() {
    let (_node, running) = start_node();
    let mut first = chat("Count from 1 to 10000, one number per line.", 4000);
    first["stream"] = json!(true);
    first["temperature"] = json!(0);
    {
        let mut stream = send(&running.addr, "/v1/chat/completions", &first);
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // The role chunk comes first; wait for a few text chunks.
        while seen.windows(5).filter(|w| w == b"data:").count() < 6 {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "stream ended early");
            seen.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
        assert!(head.contains("text/event-stream"), "{head}");
        assert!(head.contains("x-accel-buffering: no"), "{head}");
    } // dropped: the connection closes mid-stream
    let left = Instant::now();
    let mut second = chat("Say hello.", 8);
    second["stream"] = json!(true);
    let stream = send(&running.addr, "/v1/chat/completions", &second);
    let (chunks, first_text) = stream_chunks(stream, left);
    let waited = first_text.unwrap_or_else(|| panic!("no text streamed: {chunks:?}"));
    assert!(
        waited < FREED_WITHIN,
        "the second request's first token came {waited:?} after the first client left \
         (bound {FREED_WITHIN:?}): the dropped generation kept the slot"
    );
    let reason = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert!(reason.is_some(), "{chunks:?}");
}

#[test]
fn seed_n_and_temperature_sample_as_asked() {
    let (_node, running) = start_node();
    let sampled = |seed: Option<u64>, n: u32| {
        let mut body = chat("Write a short poem about the sea.", 24);
        body["temperature"] = json!(1.0);
        body["n"] = json!(n);
        if let Some(seed) = seed {
            body["seed"] = json!(seed);
        }
        let answer = post(&running.addr, "/v1/chat/completions", &body);
        let texts: Vec<String> = answer["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["message"]["content"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(texts.len(), n as usize, "{answer}");
        assert!(texts.iter().all(|t| !t.is_empty()), "{answer}");
        texts
    };
    // The same seed gives the same text; another seed another text.
    let a = sampled(Some(7), 1);
    assert_eq!(sampled(Some(7), 1), a, "same seed, different text");
    let b = sampled(Some(8), 1);
    assert_ne!(b, a, "seeds 7 and 8 gave the same text");
    // n = 2 without a seed: two different choices.
    let two = sampled(None, 2);
    assert_ne!(two[0], two[1], "n = 2 gave the same text twice");
    // With a seed, choice i samples with seed + i (both reproducible).
    assert_eq!(sampled(Some(7), 2), vec![a[0].clone(), b[0].clone()]);

    // Streamed, the same seed gives the same text as the plain answer.
    let mut body = chat("Write a short poem about the sea.", 24);
    body["temperature"] = json!(1.0);
    body["seed"] = json!(7);
    body["stream"] = json!(true);
    let stream = send(&running.addr, "/v1/chat/completions", &body);
    let (chunks, _) = stream_chunks(stream, Instant::now());
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, a[0]);

    // Text completions take the seed too.
    let completion = |seed: u64| {
        let body = json!({
            "model": "chat", "prompt": "Once upon a time", "max_tokens": 16,
            "temperature": 1.0, "seed": seed,
        });
        let answer = post(&running.addr, "/v1/completions", &body);
        answer["choices"][0]["text"].as_str().unwrap().to_string()
    };
    let c = completion(11);
    assert_eq!(completion(11), c);
    assert_ne!(completion(12), c);
}
