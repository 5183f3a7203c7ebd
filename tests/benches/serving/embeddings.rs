//! The embeddings section: `/v1/embeddings` with 16 concurrent kept-alive clients and with
//! one, against scripts/bench_embeddings.py's Python onnxruntime loops on the same model.

use crate::support::chat::spawn_node;
use crate::support::http::{exchange, post_request};
use crate::{fail, Goal, Setup, THREADS};
use cyxwiz_sdk::serde_json;
use std::{
    io::BufReader,
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    sync::Barrier,
    time::Instant,
};

const CLIENTS: usize = 16;
const PER_CLIENT: usize = 40;
const SEQUENTIAL: usize = 200;

fn sentence(i: usize) -> String {
    // The sentences of scripts/bench_embeddings.py, in the same order.
    format!(
        "Sentence number {} about distributed machine learning nodes.",
        i % 64
    )
}

fn embed_request(i: usize) -> Vec<u8> {
    let body = serde_json::json!({"model": "embed", "input": sentence(i)}).to_string();
    post_request("/v1/embeddings", &body, false)
}

/// One embedding on a kept-alive connection. The first answer is checked in full; here only
/// that it is a 200 long enough for 384 numbers, so the client stays cheap next to the server.
fn embed(conn: &mut BufReader<TcpStream>, i: usize) {
    let (status, body) = exchange(conn, &embed_request(i));
    assert!(
        status == 200 && body.len() > 384 * 2,
        "{status} {}",
        String::from_utf8_lossy(&body)
    );
}

fn connect(addr: &str) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    BufReader::new(stream)
}

/// Embeddings/s with CLIENTS kept-alive connections, each sending PER_CLIENT one-text requests.
fn concurrent_rate(addr: &str) -> f64 {
    let barrier = Barrier::new(CLIENTS + 1);
    let elapsed = std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let barrier = &barrier;
            s.spawn(move || {
                let mut conn = connect(addr);
                embed(&mut conn, c); // warm-up: the connection is open and used
                barrier.wait();
                for j in 0..PER_CLIENT {
                    embed(&mut conn, c * PER_CLIENT + j);
                }
            });
        }
        barrier.wait();
        Instant::now()
    })
    .elapsed();
    (CLIENTS * PER_CLIENT) as f64 / elapsed.as_secs_f64()
}

/// Embeddings/s with one kept-alive connection sending SEQUENTIAL one-text requests in turn.
fn sequential_rate(addr: &str) -> f64 {
    let mut conn = connect(addr);
    for i in 0..16 {
        embed(&mut conn, i);
    }
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        embed(&mut conn, i);
    }
    SEQUENTIAL as f64 / started.elapsed().as_secs_f64()
}

pub fn section(s: &Setup, data: &Path, ort_version: &str) {
    let config = data.join("embed.toml");
    std::fs::write(
        &config,
        format!(
            "[runtimes.onnx-ort]\nlibrary = \"{}\"\n[[deployments]]\nname = \"embed\"\n\
             path = \"{}\"\nplugin = \"onnx-ort\"\nthreads = {THREADS}\n",
            s.ort.display(),
            s.models.join("minilm").display()
        ),
    )
    .expect("config");
    let started = Instant::now();
    let (concurrent, sequential) = {
        let node = spawn_node(&s.node, &config, &data.join("embed"), "node".into());
        // The answer's shape, checked once in full.
        let (status, body) = exchange(&mut connect(&node.addr), &embed_request(0));
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let dims = answer["data"][0]["embedding"].as_array().map(Vec::len);
        if (status, dims) != (200, Some(384)) {
            fail(format_args!(
                "the node did not embed with MiniLM: {status} {answer}"
            ));
        }
        (concurrent_rate(&node.addr), sequential_rate(&node.addr))
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_embeddings.py");
    let out = Command::new(&s.python)
        .arg(script)
        .arg(&s.models)
        .arg((CLIENTS * PER_CLIENT).to_string())
        .output()
        .expect("python runs");
    if !out.status.success() {
        fail(format_args!(
            "scripts/bench_embeddings.py failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rate = |key: &str| {
        reference[key]
            .as_f64()
            .expect("a rate from the Python loop")
    };
    let one = rate("Python onnxruntime, 1 per call");
    let sixteen = rate("Python onnxruntime, 16 per call");
    println!(
        "\n## Embeddings: all-MiniLM-L6-v2 int8 (ONNX Runtime {ort_version}), {THREADS} threads ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "Node: `/v1/embeddings` on the onnx-ort plugin, one text per request, kept-alive connections \
         ({CLIENTS} clients x {PER_CLIENT} requests; 1 client x {SEQUENTIAL}). Python: \
         scripts/bench_embeddings.py, {} texts through onnxruntime + tokenizers + NumPy pooling.\n",
        CLIENTS * PER_CLIENT
    );
    println!("| measure | node, embeddings/s | reference | reference, embeddings/s | node / reference | goal | met |");
    println!("|---|---:|---|---:|---:|---|---|");
    let rows = [
        (
            format!("{CLIENTS} concurrent clients, 1 text each"),
            concurrent,
            "Python onnxruntime, 1 text per call",
            one,
            Goal::AtLeast(1.5),
        ),
        (
            format!("{CLIENTS} concurrent clients, 1 text each"),
            concurrent,
            "Python onnxruntime, 16 texts per call",
            sixteen,
            Goal::AtLeast(1.0),
        ),
        (
            "1 client, requests in sequence".into(),
            sequential,
            "Python onnxruntime, 1 text per call",
            one,
            Goal::AtLeast(0.85),
        ),
    ];
    for (name, node, reference, base, goal) in rows {
        let ratio = node / base;
        println!(
            "| {name} | {node:.0} | {reference} | {base:.0} | {ratio:.2}x | {} | {} |",
            goal.text(),
            goal.verdict(&[ratio])
        );
    }
}
