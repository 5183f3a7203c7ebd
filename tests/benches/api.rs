//! The HTTP API's cost and the embedding pipeline's throughput, measured in one run:
//! - `/v1/embeddings` with 16 concurrent clients (one sentence each) on the node, with
//!   dynamic batching (`max_batch = 32`) and without (`max_batch = 1`), next to a Python
//!   `onnxruntime` loop on the same int8 MiniLM (one sentence per call, and 16 per call);
//! - `/v1/predict` with 16 concurrent clients on the rapidocr classifier, with and without
//!   dynamic batching of tensor requests;
//! - the HTTP path's own cost: `GET /v1/models` and a tiny `/v1/predict` (the example
//!   `scale` plugin, a 1x3 input) requests per second over 16 keep-alive connections;
//! - chat tokens/s through `/v1/chat/completions`, plain and streamed (server-sent events),
//!   next to the gguf-llama plugin called directly in this process, same model, threads,
//!   prompt and greedy sampling.
//!
//! Needs the venv of `scripts/python-env` (`CYXWIZ_BENCH_PYTHON` overrides its python).
//! Run after `cargo build --workspace`:
//! `cargo bench -p cyxwiz-e2e --bench api --profile dev` (dependencies are optimised in every
//! profile; ONNX Runtime and llama.cpp are native code).

mod support;

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{serde_json, ChatMessage, GenerateRequest, LoadOptions, SamplingParams};
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};
use support::{bench_python, chat::stream_chat, http::exchange, target_dir, wait_healthy};

const THREADS: u32 = 2;
const CLIENTS: usize = 16;
const PER_CLIENT: usize = 25;
/// Requests per keep-alive connection for the small-request rates.
const PER_CONNECTION: usize = 200;
const MAX_TOKENS: u32 = 128;
const PROMPT: &str = "Write a short story about a robot who learns to paint.";

fn post(addr: &str, path: &str, body: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let body = text.split("\r\n\r\n").nth(1).expect("body");
    serde_json::from_str(body).expect("json")
}

/// Requests per second with CLIENTS keep-alive connections each sending PER_CONNECTION
/// copies of `request`; every answer must be a 200 whose body contains `expect`.
fn keep_alive_rate(addr: &str, request: &[u8], expect: &str) -> f64 {
    let connect = || BufReader::new(TcpStream::connect(addr).expect("connect"));
    let (status, body) = exchange(&mut connect(), request); // warm-up
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(status == 200 && body.contains(expect), "{status} {body}");
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                let mut stream = connect();
                for _ in 0..PER_CONNECTION {
                    let (status, body) = exchange(&mut stream, request);
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                }
            });
        }
    });
    (CLIENTS * PER_CONNECTION) as f64 / start.elapsed().as_secs_f64()
}

/// A streamed chat completion: tokens (from the usage chunk) per second until the end.
fn streamed_rate(addr: &str, body: &str) -> f64 {
    let streamed = stream_chat(addr, body, Instant::now());
    streamed.completion_tokens as f64 / streamed.end.as_secs_f64()
}

/// Embeddings per second with CLIENTS threads each sending PER_CLIENT one-sentence requests.
fn http_rate(addr: &str, model: &str) -> f64 {
    let body = |i: usize| {
        serde_json::json!({
            "model": model,
            "input": format!("Sentence number {i} about distributed machine learning nodes."),
        })
        .to_string()
    };
    post(addr, "/v1/embeddings", &body(0)); // warm-up
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            s.spawn(move || {
                for j in 0..PER_CLIENT {
                    let answer = post(addr, "/v1/embeddings", &body(c * PER_CLIENT + j));
                    assert_eq!(
                        answer["data"][0]["embedding"].as_array().map(Vec::len),
                        Some(384)
                    );
                }
            });
        }
    });
    (CLIENTS * PER_CLIENT) as f64 / start.elapsed().as_secs_f64()
}

/// Predictions per second with CLIENTS threads each sending PER_CLIENT 1x3x48x192 images.
fn predict_rate(addr: &str, model: &str) -> f64 {
    let body = |i: usize| {
        let value = (i % 10) as f32 / 10.0;
        serde_json::json!({
            "model": model,
            "inputs": {"x": {"dtype": "float32", "shape": [1, 3, 48, 192], "data": vec![value; 3 * 48 * 192]}},
        })
        .to_string()
    };
    post(addr, "/v1/predict", &body(0)); // warm-up
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            s.spawn(move || {
                for j in 0..PER_CLIENT {
                    let answer = post(addr, "/v1/predict", &body(c * PER_CLIENT + j));
                    assert!(answer["outputs"].is_object(), "{answer}");
                }
            });
        }
    });
    (CLIENTS * PER_CLIENT) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let models = cyxwiz_e2e::models_dir();
    let gguf = models.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let data = tempfile::tempdir().expect("tempdir");
    let config = data.path().join("config.toml");
    let scale = data.path().join("double.scale");
    std::fs::write(&scale, r#"{"factor": 2.0, "width": 3}"#).expect("scale model");
    std::fs::write(
        &config,
        format!(
            r#"
[plugins.preference]
onnx = ["onnx-ort"]
[runtimes.onnx-ort]
library = "{ort}"
[[deployments]]
name = "chat"
path = "{gguf}"
threads = {THREADS}
options = {{ slots = 1 }}
[[deployments]]
name = "embed"
path = "{minilm}"
threads = {THREADS}
max_batch = 32
[[deployments]]
name = "embed-unbatched"
path = "{minilm}"
threads = {THREADS}
max_batch = 1
[[deployments]]
name = "cls"
path = "{cls}"
threads = {THREADS}
max_batch = 32
[[deployments]]
name = "cls-unbatched"
path = "{cls}"
threads = {THREADS}
max_batch = 1
[[deployments]]
name = "scale"
path = "{scale}"
max_batch = 1
"#,
            ort = models
                .join("runtimes/onnxruntime/libonnxruntime.so.1.31.1")
                .display(),
            gguf = gguf.display(),
            minilm = models.join("minilm").display(),
            cls = models
                .join("rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx")
                .display(),
            scale = scale.display(),
        ),
    )
    .expect("config");
    let mut node = Command::new(target_dir().join("cyxwiz-node"))
        .args(["run", "--api-port", "0", "--config"])
        .arg(&config)
        .env("CYXWIZ_DATA_DIR", data.path())
        .env("CYXWIZ_LOG_LEVEL", "warn,cyxwiz_node::daemon=info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut lines = BufReader::new(node.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines.next().expect("node log").expect("line");
        if let Some(a) = line.split("listening on http://").nth(1) {
            break a.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    wait_healthy(&addr, "the node with its models");

    println!(
        "## /v1/embeddings, all-MiniLM-L6-v2 int8, {THREADS} threads, {CLIENTS} clients x {PER_CLIENT} requests of 1 sentence"
    );
    let mut rates: Vec<(String, f64)> = ["embed", "embed-unbatched"]
        .iter()
        .map(|m| {
            (
                format!("node `{m}`, {CLIENTS} concurrent clients"),
                http_rate(&addr, m),
            )
        })
        .collect();
    let out = Command::new(bench_python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_embeddings.py"))
        .arg(&models)
        .arg((CLIENTS * PER_CLIENT).to_string())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for (name, rate) in reference.as_object().expect("object") {
        rates.push((name.clone(), rate.as_f64().expect("rate")));
    }
    let base = rates
        .iter()
        .find(|(n, _)| n.contains("1 per call"))
        .map(|(_, r)| *r)
        .expect("reference");
    println!("| path | embeddings/s | vs Python ORT 1/call |");
    println!("|---|---:|---:|");
    for (name, rate) in &rates {
        println!("| {name} | {rate:.0} | {:.2}x |", rate / base);
    }

    println!(
        "\n## /v1/predict, rapidocr classifier 1x3x48x192 (ONNX Runtime, {THREADS} threads), {CLIENTS} clients x {PER_CLIENT} requests"
    );
    println!("| path | predictions/s | vs unbatched |");
    println!("|---|---:|---:|");
    let unbatched = predict_rate(&addr, "cls-unbatched");
    let batched = predict_rate(&addr, "cls");
    println!("| node `cls-unbatched` (max_batch = 1) | {unbatched:.0} | 1.00x |");
    println!(
        "| node `cls` (max_batch = 32) | {batched:.0} | {:.2}x |",
        batched / unbatched
    );

    println!("\n## small requests, {CLIENTS} keep-alive connections x {PER_CONNECTION} requests");
    println!("| request | requests/s |");
    println!("|---|---:|");
    let list = b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let rate = keep_alive_rate(&addr, list, "\"scale\"");
    println!("| `GET /v1/models` | {rate:.0} |");
    let small = r#"{"model":"scale","inputs":{"x":[[1.0,2.0,3.0]]}}"#;
    let predict = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{small}",
        small.len()
    );
    let rate = keep_alive_rate(&addr, predict.as_bytes(), "outputs");
    println!("| `POST /v1/predict`, `scale` model, 1x3 f32 | {rate:.0} |");

    println!(
        "\n## chat tokens/s, SmolLM2-135M Q4_1, {THREADS} threads, {MAX_TOKENS} tokens, greedy"
    );
    let lib = PluginLibrary::open(&target_dir().join("libcyxwiz_plugin_gguf_llama.so"))
        .expect("gguf plugin");
    let model = lib
        .load(
            &gguf,
            &LoadOptions {
                threads: THREADS,
                options: serde_json::json!({"slots": 1}),
                ..LoadOptions::default()
            },
        )
        .expect("load");
    let request = GenerateRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: PROMPT.into(),
        }],
        prompt: String::new(),
        params: SamplingParams {
            max_tokens: MAX_TOKENS,
            temperature: 0.0,
            ..SamplingParams::default()
        },
    };
    let body = serde_json::json!({
        "model": "chat", "temperature": 0, "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": PROMPT}],
    })
    .to_string();
    let streamed_body = serde_json::json!({
        "model": "chat", "temperature": 0, "max_tokens": MAX_TOKENS, "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": PROMPT}],
    })
    .to_string();
    let mut direct = Vec::new();
    let mut api = Vec::new();
    let mut streamed = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let out = model
            .generate(&request, &mut |_: &str| true)
            .expect("generate");
        direct.push(f64::from(out.completion_tokens) / start.elapsed().as_secs_f64());
        let start = Instant::now();
        let answer = post(&addr, "/v1/chat/completions", &body);
        let tokens = answer["usage"]["completion_tokens"]
            .as_f64()
            .expect("usage");
        api.push(tokens / start.elapsed().as_secs_f64());
        streamed.push(streamed_rate(&addr, &streamed_body));
    }
    direct.sort_by(f64::total_cmp);
    api.sort_by(f64::total_cmp);
    streamed.sort_by(f64::total_cmp);
    let (d, a, st) = (direct[2], api[2], streamed[2]);
    println!("| path | tokens/s (median of 5) | vs direct |");
    println!("|---|---:|---:|");
    println!("| plugin called directly | {d:.1} | 1.00x |");
    println!("| node /v1/chat/completions | {a:.1} | {:.2}x |", a / d);
    println!(
        "| node /v1/chat/completions, streamed | {st:.1} | {:.2}x |",
        st / d
    );
    let _ = node.kill();
    let _ = node.wait();
}
