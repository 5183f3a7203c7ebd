//! Training jobs end to end, on the real datasets and the pure-Rust backend (train-candle):
//! the Engine-format MLP on Fashion-MNIST and a CNN on digits reach their accuracy bars as
//! scored by NumPy alone (tests/fixtures/score_weights.py, not through the node); the trained
//! network served through `/v1/predict` agrees with NumPy; `kill -9` mid-job resumes from the
//! checkpoint (or fails with the reason when resuming is off); cancel and pause/resume obey;
//! bad graphs, datasets and hyperparameters are refused naming the field.

mod common;

use common::{stderr, stdout, Node, Running};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The issue's Engine graph: DatasetInput → Flatten → Dense(128) → ReLU → Dropout(0.2) →
/// Dense(10) → Softmax → CrossEntropy, with Adam.
const ENGINE_MLP: &str = r#"{
  "version": "1.0",
  "nodes": [
    {"id": 1, "type": 77, "name": "Dataset Input", "parameters": {"dataset": "fashion-mnist"}},
    {"id": 2, "type": 15, "name": "Flatten", "parameters": {}},
    {"id": 3, "type": 0, "name": "Dense (128)", "parameters": {"units": "128"}},
    {"id": 4, "type": 29, "name": "ReLU", "parameters": {}},
    {"id": 5, "type": 14, "name": "Dropout", "parameters": {"rate": "0.2"}},
    {"id": 6, "type": 0, "name": "Dense (10)", "parameters": {"units": "10"}},
    {"id": 7, "type": 39, "name": "Softmax", "parameters": {}},
    {"id": 8, "type": 52, "name": "CrossEntropyLoss", "parameters": {}},
    {"id": 9, "type": 60, "name": "Adam", "parameters": {"learning_rate": "0.001"}}
  ],
  "links": [
    {"id": 1, "from_node": 1, "from_pin_index": 0, "to_node": 2, "to_pin_index": 0},
    {"id": 2, "from_node": 2, "from_pin_index": 0, "to_node": 3, "to_pin_index": 0},
    {"id": 3, "from_node": 3, "from_pin_index": 0, "to_node": 4, "to_pin_index": 0},
    {"id": 4, "from_node": 4, "from_pin_index": 0, "to_node": 5, "to_pin_index": 0},
    {"id": 5, "from_node": 5, "from_pin_index": 0, "to_node": 6, "to_pin_index": 0},
    {"id": 6, "from_node": 6, "from_pin_index": 0, "to_node": 7, "to_pin_index": 0},
    {"id": 7, "from_node": 7, "from_pin_index": 0, "to_node": 8, "to_pin_index": 0},
    {"id": 8, "from_node": 1, "from_pin_index": 1, "to_node": 8, "to_pin_index": 1},
    {"id": 9, "from_node": 8, "from_pin_index": 0, "to_node": 9, "to_pin_index": 0}
  ]
}"#;

/// A small CNN in the plain form, for the 8×8 digits.
const PLAIN_CNN: &str = r#"{
  "layers": [
    {"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "maxpool2d", "pool_size": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 64, "activation": "relu"},
    {"type": "dense", "units": 10}
  ],
  "loss": "cross_entropy",
  "optimizer": {"type": "adam", "lr": 0.003}
}"#;

/// A small MLP for the digits (fast; used where the job only has to run).
const PLAIN_MLP: &str = r#"{
  "layers": [{"type": "flatten"}, {"type": "dense", "units": 32, "activation": "relu"},
             {"type": "dense", "units": 10}],
  "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9}}"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `jobs submit …`; the job id.
fn submit(node: &Node, graph: &Path, dataset: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "jobs",
        "submit",
        "--graph",
        graph.to_str().unwrap(),
        "--dataset",
        dataset,
    ];
    args.extend_from_slice(extra);
    let out = node.cli(&args);
    assert!(out.status.success(), "submit failed: {}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "not a job id: {id:?}");
    id
}

/// `jobs show ID --json`.
fn show(node: &Node, id: &str) -> serde_json::Value {
    let out = node.cli(&["jobs", "show", id, "--json"]);
    assert!(out.status.success(), "show failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// Polls the job until `done` holds for it.
fn wait_for(
    node: &Node,
    id: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let job = show(node, id);
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job never {what}: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ended(job: &serde_json::Value) -> bool {
    matches!(
        job["state"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// Scores a weights file with NumPy alone.
fn score(weights: &Path, dataset: &str, seed: u64, split: f64) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/score_weights.py");
    let out = Command::new(cyxwiz_e2e::venv_python())
        .arg(script)
        .arg(weights)
        .args([
            "--dataset",
            dataset,
            "--seed",
            &seed.to_string(),
            "--split",
            &split.to_string(),
        ])
        .arg("--models")
        .arg(cyxwiz_e2e::models_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "scoring failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn weights_of(job: &serde_json::Value) -> PathBuf {
    PathBuf::from(job["dir"].as_str().unwrap()).join("weights.safetensors")
}

/// Starts the node with the digits CSV where `builtin://digits` looks for it (the node's
/// models dir, `<data dir>/models`, is a scratch directory here). Jobs get one thread each
/// (unless the test wrote its own config): the tests of this file run two at a time on
/// machines with two cores, and libtorch's OpenMP threads crawl when oversubscribed.
fn start(node: &Node) -> Running {
    if !node.data_dir().join("config.toml").exists() {
        node.write_config("[jobs]\nthreads_per_job = 1\n");
    }
    let csv = cyxwiz_e2e::models_dir().join("datasets/digits.csv.gz");
    let dest = node.data_dir().join("models/datasets");
    std::fs::create_dir_all(&dest).unwrap();
    if !dest.join("digits.csv.gz").exists() {
        std::fs::copy(&csv, dest.join("digits.csv.gz")).unwrap();
    }
    node.start(&[])
}

/// A GET whose body is bytes; returns status, head and body.
fn get_bytes(addr: &str, path: &str, range: Option<&str>) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{range}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, raw[split + 4..].to_vec())
}

#[test]
fn the_engine_mlp_learns_fashion_mnist_and_serves_what_numpy_predicts() {
    let node = Node::new();
    let running = start(&node);
    let graph = write(node.data_dir(), "mlp.json", ENGINE_MLP);
    let id = submit(
        &node,
        &graph,
        "builtin://fashion-mnist",
        &["--epochs", "3", "--batch-size", "64", "--seed", "7"],
    );
    let job = wait_for(&node, &id, "ended", ended);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["epoch"], 3, "{job}");
    let weights = weights_of(&job);
    let (sha, size) = sha256(&weights);
    assert_eq!(
        job["weights_sha256"],
        sha.as_str(),
        "the result hash is the file's sha256"
    );
    assert_eq!(job["weights_bytes"], size);
    for key in ["loss", "accuracy", "val_loss", "val_accuracy"] {
        assert!(job["metrics"][key].is_number(), "{key} missing: {job}");
    }
    let scored = score(&weights, "fashion-test", 0, 0.0);
    let accuracy = scored["accuracy"].as_f64().unwrap();
    println!(
        "Fashion-MNIST test accuracy (NumPy): {accuracy:.4} over {}",
        scored["count"]
    );
    assert!(accuracy >= 0.84, "test accuracy {accuracy} below 0.84");

    // Train → serve: the job directory deploys like any model; /v1/predict agrees with NumPy.
    let out = node.cli(&["deploy", job["dir"].as_str().unwrap(), "--name", "fashion"]);
    assert!(out.status.success(), "deploy failed: {}", stderr(&out));
    let images = fashion_test_images(100);
    let body = serde_json::json!({
        "model": "fashion",
        "inputs": {"input": {"dtype": "float32", "shape": [100, 1, 28, 28], "data": images}}
    });
    let (status, _, text) =
        common::post_full(&running.addr, "/v1/predict", None, &body.to_string());
    assert_eq!(status, 200, "{text}");
    let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
    let logits = &reply["outputs"]["logits"];
    let data: Vec<f64> = logits["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let classes: Vec<u64> = data
        .chunks(10)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as u64)
                .unwrap()
        })
        .collect();
    let numpy: Vec<u64> = scored["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(classes, numpy, "the served network and NumPy disagree");

    // The weights download through the CLI with the same hash.
    let out_file = node.data_dir().join("downloaded.safetensors");
    let out = node.cli(&["jobs", "weights", &id, "--out", out_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sha256(&out_file).0, sha);
    running.stop();
}

#[test]
fn a_cnn_learns_the_digits() {
    let node = Node::new();
    let running = start(&node);
    let graph = write(node.data_dir(), "cnn.json", PLAIN_CNN);
    let id = submit(
        &node,
        &graph,
        "builtin://digits",
        &[
            "--epochs",
            "20",
            "--batch-size",
            "32",
            "--seed",
            "11",
            "--validation-split",
            "0.2",
        ],
    );
    let job = wait_for(&node, &id, "ended", ended);
    assert_eq!(job["state"], "succeeded", "{job}");
    let scored = score(&weights_of(&job), "digits-validation", 11, 0.2);
    let accuracy = scored["accuracy"].as_f64().unwrap();
    println!(
        "digits held-out accuracy (NumPy): {accuracy:.4} over {}",
        scored["count"]
    );
    assert!(accuracy >= 0.95, "held-out accuracy {accuracy} below 0.95");
    let reported = job["metrics"]["val_accuracy"].as_f64().unwrap();
    assert!(
        (reported - accuracy).abs() < 1e-6,
        "node's val_accuracy {reported} vs NumPy {accuracy}"
    );
    running.stop();
}

fn kill9(mut running: Running) {
    let child = &mut running.child;
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
}

#[test]
fn kill_9_during_epoch_two_resumes_from_the_checkpoint() {
    let node = Node::new();
    let running = start(&node);
    let graph = write(node.data_dir(), "mlp.json", ENGINE_MLP);
    let id = submit(
        &node,
        &graph,
        "builtin://fashion-mnist",
        &["--epochs", "3", "--batch-size", "64", "--seed", "5"],
    );
    let job = wait_for(&node, &id, "reached epoch 2", |j| {
        ended(j) || (j["epoch"] == 1 && j["step"].as_u64().unwrap_or(0) > 20)
    });
    assert_eq!(job["state"], "running", "{job}");
    assert_eq!(
        job["checkpoint_epoch"], 1,
        "an epoch-end checkpoint exists: {job}"
    );
    kill9(running);

    // The database still says running; a new run takes the job over from its checkpoint.
    let running = start(&node);
    let job = wait_for(&node, &id, "ended", ended);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["attempt"], 2, "{job}");
    let accuracy = score(&weights_of(&job), "fashion-test", 0, 0.0)["accuracy"]
        .as_f64()
        .unwrap();
    println!("resumed Fashion-MNIST test accuracy: {accuracy:.4}");
    assert!(accuracy >= 0.84, "resumed job reached only {accuracy}");
    let log = std::fs::read_to_string(PathBuf::from(job["dir"].as_str().unwrap()).join("log.txt"))
        .unwrap();
    assert!(
        log.contains("resuming from the checkpoint after epoch 1"),
        "{log}"
    );
    running.stop();

    // With resuming off, the interrupted job fails with the reason; nothing stays running.
    let node = Node::new();
    node.write_config("[jobs]\nresume_after_restart = false\nthreads_per_job = 1\n");
    let running = start(&node);
    let graph = write(node.data_dir(), "mlp.json", PLAIN_MLP);
    let id = submit(
        &node,
        &graph,
        "builtin://digits",
        &["--epochs", "500", "--batch-size", "16"],
    );
    wait_for(&node, &id, "running", |j| {
        ended(j) || j["epoch"].as_u64().unwrap_or(0) >= 1
    });
    kill9(running);
    let running = start(&node);
    let job = show(&node, &id);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"], "node restarted during the job", "{job}");
    let out = node.cli(&["jobs", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|j| j["state"] != "running"),
        "{list}"
    );
    running.stop();
}

#[test]
fn pause_resume_and_cancel_obey_and_keep_partial_weights() {
    let node = Node::new();
    let running = start(&node);
    let graph = write(node.data_dir(), "mlp.json", PLAIN_MLP);
    let id = submit(
        &node,
        &graph,
        "builtin://digits",
        &["--epochs", "2000", "--batch-size", "16", "--seed", "2"],
    );
    wait_for(&node, &id, "trained an epoch", |j| {
        ended(j) || j["epoch"].as_u64().unwrap_or(0) >= 2
    });

    // Pause: the job checkpoints and stops moving; resume continues from there.
    let out = node.cli(&["jobs", "pause", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let paused = wait_for(&node, &id, "paused", |j| ended(j) || j["state"] == "paused");
    assert_eq!(paused["state"], "paused", "{paused}");
    std::thread::sleep(Duration::from_millis(700));
    let still = show(&node, &id);
    assert_eq!(
        still["samples"], paused["samples"],
        "a paused job does not train"
    );
    let out = node.cli(&["jobs", "resume", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let moved = wait_for(&node, &id, "resumed", |j| {
        ended(j) || j["samples"].as_u64().unwrap_or(0) > paused["samples"].as_u64().unwrap_or(0)
    });
    assert_eq!(moved["state"], "running", "{moved}");
    let events =
        std::fs::read_to_string(PathBuf::from(moved["dir"].as_str().unwrap()).join("log.txt"))
            .unwrap();
    assert!(
        events.contains("checkpoint (pause)"),
        "a pause writes a checkpoint: {events}"
    );

    // Cancel over HTTP: stopped within the 2 s deadline, partial weights downloadable.
    let asked = Instant::now();
    let (status, _, text) =
        common::post_full(&running.addr, &format!("/v1/jobs/{id}/cancel"), None, "");
    let took = asked.elapsed();
    assert_eq!(status, 200, "{text}");
    let job = show(&node, &id);
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(took < Duration::from_secs(3), "cancel took {took:?}");
    let path = format!("/v1/jobs/{id}/weights");
    let (status, _, body) = get_bytes(&running.addr, &path, None);
    assert_eq!(status, 200);
    assert_eq!(body.len() as u64, job["weights_bytes"].as_u64().unwrap());
    let (status, head, part) = get_bytes(&running.addr, &path, Some("bytes=8-99"));
    assert_eq!(status, 206, "{head}");
    assert_eq!(part, body[8..100], "a range is the file's bytes");

    // Cancel through the CLI.
    let id = submit(
        &node,
        &graph,
        "builtin://digits",
        &["--epochs", "2000", "--batch-size", "16"],
    );
    wait_for(&node, &id, "running", |j| {
        ended(j) || j["samples"].as_u64().unwrap_or(0) > 0
    });
    let asked = Instant::now();
    let out = node.cli(&["jobs", "cancel", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(asked.elapsed() < Duration::from_secs(3));
    let job = show(&node, &id);
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(weights_of(&job).is_file(), "partial weights kept: {job}");
    running.stop();
}

#[test]
fn bad_graphs_datasets_and_hyperparameters_are_refused_naming_the_field() {
    let node = Node::new();
    let datasets = node.data_dir().join("datasets");
    std::fs::create_dir_all(&datasets).unwrap();
    let running = start(&node);
    let good = write(node.data_dir(), "good.json", PLAIN_MLP);
    let engine = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut g: serde_json::Value = serde_json::from_str(ENGINE_MLP).unwrap();
        edit(&mut g);
        g.to_string()
    };
    let unknown = engine(&|g| g["nodes"][2]["type"] = 999.into());
    let cycle = engine(&|g| g["links"][1]["from_node"] = 5.into()); // 3 → 4 → 5 → 3
    let misfit = engine(&|g| g["nodes"][5]["parameters"]["units"] = "7".into());
    let no_loss = engine(&|g| {
        g["nodes"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != 52);
        g["links"]
            .as_array_mut()
            .unwrap()
            .retain(|l| l["to_node"] != 8 && l["from_node"] != 8);
    });
    // A truncated IDX pair and a CSV without the named column, inside the dataset dir.
    let images =
        std::fs::read("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").unwrap();
    std::fs::write(
        datasets.join("cut-images-idx3-ubyte.gz"),
        &images[..images.len() / 2],
    )
    .unwrap();
    std::fs::copy(
        "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
        datasets.join("cut-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    std::fs::write(datasets.join("table.csv"), "a,b,class\n1,2,0\n3,4,1\n").unwrap();
    let outside = node.data_dir().join("elsewhere.csv");
    std::fs::write(&outside, "a,label\n1,0\n").unwrap();
    let file = |p: &Path| format!("file://{}", p.display());
    let cases: Vec<(String, String, Vec<&str>, &str)> = vec![
        (unknown, "builtin://fashion-mnist".into(), vec![], "node 3"),
        (
            cycle,
            "builtin://fashion-mnist".into(),
            vec![],
            "on a cycle",
        ),
        (misfit, "builtin://fashion-mnist".into(), vec![], "node 8"),
        (no_loss, "builtin://fashion-mnist".into(), vec![], "loss"),
        (
            PLAIN_MLP.into(),
            file(&datasets.join("missing.csv")),
            vec![],
            "does not exist",
        ),
        (
            PLAIN_MLP.into(),
            file(&outside),
            vec![],
            "outside the allowed dataset directories",
        ),
        (
            PLAIN_MLP.into(),
            file(&datasets.join("cut-images-idx3-ubyte.gz")),
            vec![],
            "truncated",
        ),
        (
            PLAIN_MLP.into(),
            file(&datasets.join("table.csv")),
            vec![],
            "no label column",
        ),
        (
            PLAIN_MLP.into(),
            "builtin://digits".into(),
            vec!["--epochs", "0"],
            "epochs",
        ),
        (
            PLAIN_MLP.into(),
            "builtin://digits".into(),
            vec!["--lr", "1e9"],
            "learning_rate",
        ),
        (
            PLAIN_MLP.into(),
            "builtin://digits".into(),
            vec!["--batch-size", "100000000"],
            "batch_size",
        ),
    ];
    for (i, (graph, dataset, extra, expect)) in cases.iter().enumerate() {
        let path = write(node.data_dir(), &format!("case{i}.json"), graph);
        let mut args = vec![
            "jobs",
            "submit",
            "--graph",
            path.to_str().unwrap(),
            "--dataset",
            dataset,
        ];
        args.extend(extra.iter().copied());
        let out = node.cli(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "case {i} was accepted");
        assert!(err.contains("error (invalid input)"), "case {i}: {err}");
        assert!(
            err.contains(expect),
            "case {i} should mention {expect:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "case {i}: {err}");
    }
    // Nothing was queued and the node still serves.
    let out = node.cli(&["jobs", "list", "--json"]);
    assert_eq!(stdout(&out).trim(), "[]");
    let id = submit(&node, &good, "builtin://digits", &["--epochs", "1"]);
    let job = wait_for(&node, &id, "ended", ended);
    assert_eq!(job["state"], "succeeded", "{job}");
    running.stop();
}

fn sha256(path: &Path) -> (String, u64) {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    let hash = sha2::Sha256::digest(&bytes);
    (
        hash.iter().map(|b| format!("{b:02x}")).collect(),
        bytes.len() as u64,
    )
}

/// The first `n` Fashion-MNIST test images, scaled to [0, 1], flat.
fn fashion_test_images(n: usize) -> Vec<f32> {
    use std::io::Read;
    let gz = std::fs::read("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut bytes)
        .unwrap();
    bytes[16..16 + n * 784]
        .iter()
        .map(|&b| f32::from(b) / 255.0)
        .collect()
}

#[test]
fn the_libtorch_backend_reaches_the_same_bars_through_the_node() {
    // torch-tch is a native plugin outside default-members; scripts/test builds it.
    common::plugin_lib("cyxwiz_plugin_torch_tch");
    let node = Node::new();
    let running = start(&node);
    let mlp = write(node.data_dir(), "mlp.json", ENGINE_MLP);
    let cnn = write(node.data_dir(), "cnn.json", PLAIN_CNN);
    let fashion = submit(
        &node,
        &mlp,
        "builtin://fashion-mnist",
        &[
            "--epochs",
            "3",
            "--batch-size",
            "64",
            "--seed",
            "7",
            "--backend",
            "torch-tch",
        ],
    );
    let digits = submit(
        &node,
        &cnn,
        "builtin://digits",
        &[
            "--epochs",
            "20",
            "--batch-size",
            "32",
            "--seed",
            "11",
            "--validation-split",
            "0.2",
            "--backend",
            "torch-tch",
        ],
    );
    let job = wait_for(&node, &fashion, "ended", ended);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["backend"], "torch-tch");
    let accuracy = score(&weights_of(&job), "fashion-test", 0, 0.0)["accuracy"]
        .as_f64()
        .unwrap();
    println!("torch-tch Fashion-MNIST test accuracy (NumPy): {accuracy:.4}");
    assert!(accuracy >= 0.84, "test accuracy {accuracy} below 0.84");
    let job = wait_for(&node, &digits, "ended", ended);
    assert_eq!(job["state"], "succeeded", "{job}");
    let accuracy = score(&weights_of(&job), "digits-validation", 11, 0.2)["accuracy"]
        .as_f64()
        .unwrap();
    println!("torch-tch digits held-out accuracy (NumPy): {accuracy:.4}");
    assert!(accuracy >= 0.95, "held-out accuracy {accuracy} below 0.95");
    running.stop();
}
