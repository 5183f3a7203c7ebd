//! Dynamic batching of `/v1/embeddings` on the real node (all-MiniLM-L6-v2 int8 through ONNX
//! Runtime, real HTTP on loopback): a text gets the same vector whether it runs alone, in a
//! request of many texts of different lengths (padded to the longest), or in a batch gathered
//! from concurrent clients, and every concurrent client gets its own rows back.

mod common;

use common::{models_dir, post_full, Node, Running};
use std::time::{Duration, Instant};

/// Vectors may differ by float rounding only.
const TOLERANCE: f32 = 1e-5;

/// `count` sentences of 1 to 40 words drawn with a fixed seed, so that batches mix lengths.
fn sentences(count: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "node",
        "model",
        "vector",
        "cluster",
        "training",
        "gradient",
        "network",
        "token",
        "embedding",
        "batch",
        "server",
        "latency",
        "the",
        "a",
        "of",
        "runs",
        "fast",
        "slowly",
        "distributed",
        "learning",
        "über",
        "naïve",
        "東京",
        "42",
        "GPU",
        "memory",
        "queue",
    ];
    let mut state: u64 = 0x5eed;
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n
    };
    (0..count)
        .map(|_| {
            let len = 1 + next(40);
            (0..len)
                .map(|_| WORDS[next(WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The vectors of one `/v1/embeddings` request (float encoding), in input order.
fn embed(addr: &str, model: &str, input: serde_json::Value) -> Vec<Vec<f32>> {
    let body = serde_json::json!({"model": model, "input": input}).to_string();
    let (status, _, text) = post_full(addr, "/v1/embeddings", None, &body);
    assert_eq!(status, 200, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let data = json["data"].as_array().unwrap();
    data.iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["index"], i, "{item}");
            item["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: width");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= TOLERANCE, "{what}: differs by {worst}");
}

fn start() -> (Node, Running) {
    let node = Node::new();
    node.write_config(&format!(
        r#"
{ort}
[[deployments]]
name = "embed"
path = "{minilm}"
threads = 2
max_batch = 32

[[deployments]]
name = "embed-unbatched"
path = "{minilm}"
threads = 2
max_batch = 1
"#,
        ort = common::prefer_onnx_runtime(),
        minilm = models_dir().join("minilm").display(),
    ));
    // The worker logs each batch it runs at debug level.
    let running = node.start(&["--log-level", "info,cyxwiz_node::models::worker=debug"]);
    common::wait_ready(&running);
    let (_, health) = running.get_json("/health");
    for model in health["models"].as_array().unwrap() {
        assert_eq!(model["plugin"], "onnx-ort", "{model}");
    }
    (node, running)
}

#[test]
fn batched_and_concurrent_embeddings_equal_the_unbatched_ones_row_by_row() {
    let (_node, mut running) = start();
    let texts = sentences(24);
    // Each text alone, one request at a time, on the deployment that never batches.
    let alone: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| embed(&running.addr, "embed-unbatched", serde_json::json!(t)).remove(0))
        .collect();
    assert!(alone.iter().all(|v| v.len() == 384));
    let norm: f32 = alone[0].iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
    // Distinct texts, distinct vectors: a row swap below cannot go unnoticed.
    for (i, a) in alone.iter().enumerate() {
        for b in &alone[i + 1..] {
            let gap = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(gap > 100.0 * TOLERANCE, "two texts share a vector");
        }
    }

    // All texts in one request: one run padded to the longest.
    let together = embed(&running.addr, "embed", serde_json::json!(texts));
    assert_eq!(together.len(), texts.len());
    for (i, (got, want)) in together.iter().zip(&alone).enumerate() {
        assert_close(
            got,
            want,
            &format!("text {i} in one request of {}", texts.len()),
        );
    }

    // Concurrent clients, each sending its own text, several rounds: the worker gathers them
    // into batches and must hand every client its own row.
    let rounds = 4;
    std::thread::scope(|s| {
        for (i, (text, want)) in texts.iter().zip(&alone).enumerate() {
            let addr = running.addr.as_str();
            s.spawn(move || {
                for round in 0..rounds {
                    let got = embed(addr, "embed", serde_json::json!([text])).remove(0);
                    assert_close(&got, want, &format!("client {i}, round {round}"));
                }
            });
        }
    });

    // Batches of several jobs really ran (the property above is about them).
    let deadline = Instant::now() + Duration::from_secs(10);
    let largest = loop {
        let largest = running
            .drain_log()
            .iter()
            .filter(|l| l.contains("embedding batch"))
            .filter_map(|l| l.split("jobs=").nth(1))
            .filter_map(|n| n.split_whitespace().next()?.parse::<usize>().ok())
            .max()
            .unwrap_or(0);
        if largest > 1 || Instant::now() > deadline {
            break largest;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        largest > 1,
        "{} concurrent clients x {rounds} rounds never made a batch of two jobs",
        texts.len()
    );
}

#[test]
fn float_and_base64_vectors_agree_for_batched_requests() {
    let (_node, running) = start();
    let texts = sentences(5);
    let floats = embed(&running.addr, "embed", serde_json::json!(texts));
    let body = serde_json::json!({"model": "embed", "input": texts, "encoding_format": "base64"})
        .to_string();
    let (status, _, text) = post_full(&running.addr, "/v1/embeddings", None, &body);
    assert_eq!(status, 200, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let data = json["data"].as_array().unwrap();
    assert_eq!(data.len(), floats.len());
    assert_eq!(
        json["usage"]["prompt_tokens"], json["usage"]["total_tokens"],
        "{json}"
    );
    for (item, want) in data.iter().zip(&floats) {
        let b64 = item["embedding"].as_str().unwrap();
        let bytes = decode_base64(b64);
        let got: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        // The float encoding is the shortest decimal that reads back as the same f32.
        assert_eq!(&got, want);
    }
}

/// Standard base64 with padding.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let digits: Vec<u8> = chunk
            .iter()
            .filter(|&&c| c != b'=')
            .map(|&c| value(c))
            .collect();
        let n = digits
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | u32::from(*d) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..digits.len()]);
    }
    out
}
