//! The Engine's direct training link (JobExecutionService, P2P) end to end: the Python client
//! tests/fixtures/engine_client.py plays the CyxWiz Engine against the real node, with a P2P
//! token minted with the test secret. Fashion-MNIST travels batch by batch over the training
//! stream, the weights come back through a resumed DownloadWeights and NumPy scores them;
//! bad tokens and foreign job ids are refused with the right status; CancelTraining and the
//! stream's `stop` end running jobs with partial weights. `update_params` retunes a running
//! job from its next epoch; a job sent with StartNewJob runs on the idle open stream; an ended
//! reservation takes no more jobs or streams. The stream's cost is measured against the same
//! job on the node's own copy of the dataset.

mod common;

use common::{free_port, stderr, stdout, Node, Running};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The central server's JWT secret in these tests (`[p2p] jwt_secret`).
const SECRET: &str = "p2p-e2e-secret-that-signs-the-reservation-tokens";

/// Largest DownloadWeights chunk the test nodes send (small, so the cap shows on a 400 kB file).
const MAX_CHUNK: usize = 100_000;

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/engine_client.py")
}

/// A node serving JobExecutionService on a gRPC port, with its id.
struct P2pNode {
    node: Node,
    running: Running,
    grpc: String,
    id: String,
}

/// Starts a node whose P2P tokens are signed with [`SECRET`] and may be `max_token_age`
/// seconds old; jobs asking for CUDA run on the CPU (the Engine asks for CUDA on every job),
/// one thread each (tests run side by side on small machines).
fn start(max_token_age: u64, more_p2p: &str) -> P2pNode {
    let node = Node::new();
    node.write_config(&format!(
        r#"
[grpc]
host = "127.0.0.1"

[jobs]
threads_per_job = 1
cuda_jobs_on_cpu = "run_on_cpu"

[p2p]
jwt_secret = "{SECRET}"
max_token_age_seconds = {max_token_age}
max_download_chunk_bytes = {MAX_CHUNK}
{more_p2p}
"#
    ));
    let port = free_port();
    let running = node.start(&["--grpc-ports", &port.to_string()]);
    let grpc = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&grpc).is_err() {
        assert!(Instant::now() < deadline, "gRPC never listened on {grpc}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = node.cli(&["status", "--json"]);
    assert!(out.status.success(), "status failed: {}", stderr(&out));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let id = status["node"]["id"].as_str().unwrap().to_string();
    assert!(!id.is_empty(), "the node has no id: {status}");
    P2pNode {
        node,
        running,
        grpc,
        id,
    }
}

/// Runs the Engine client's `scenario` against `p`; its JSON summary. Fails the test, with
/// every failed check and the client's notes, unless all its checks held.
fn engine(p: &P2pNode, scenario: &str, extra: &[&str]) -> serde_json::Value {
    let out_dir = p.node.data_dir().join(format!("engine-{scenario}"));
    let out = Command::new(common::venv_python())
        .arg(client_script())
        .args([
            "--scenario",
            scenario,
            "--node",
            &p.grpc,
            "--secret",
            SECRET,
        ])
        .args(["--node-id", &p.id, "--out"])
        .arg(&out_dir)
        .args(extra)
        .output()
        .unwrap();
    let notes = stderr(&out);
    eprintln!("{notes}");
    let text = stdout(&out);
    let summary: serde_json::Value = serde_json::from_str(text.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("engine client printed no summary ({e}):\n{text}\n{notes}"));
    let failures = summary["failures"].as_array().cloned().unwrap_or_default();
    assert!(
        out.status.success() && summary["ok"] == true && failures.is_empty(),
        "the Engine client's checks failed ({scenario}):\n  {}\n\nsummary: {}",
        failures
            .iter()
            .map(|f| f.as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n  "),
        serde_json::to_string_pretty(&summary).unwrap()
    );
    summary
}

/// `jobs list --json`.
fn jobs(node: &Node) -> Vec<serde_json::Value> {
    let out = node.cli(&["jobs", "list", "--json"]);
    assert!(out.status.success(), "jobs list failed: {}", stderr(&out));
    serde_json::from_str::<serde_json::Value>(&stdout(&out))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The node's view of the jobs of one reservation, oldest first.
fn reservation_jobs(node: &Node, reservation: &str) -> Vec<serde_json::Value> {
    let mut found: Vec<_> = jobs(node)
        .into_iter()
        .filter(|j| j["reservation"] == reservation)
        .collect();
    found.sort_by(|a, b| {
        a["created_at"]
            .as_str()
            .unwrap_or_default()
            .cmp(b["created_at"].as_str().unwrap_or_default())
    });
    found
}

fn ended(job: &serde_json::Value) -> bool {
    matches!(
        job["state"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// Training samples per second of an ended job, as the node counted them.
fn samples_per_second(job: &serde_json::Value) -> f64 {
    let samples = job["samples"].as_f64().unwrap_or(0.0);
    let seconds = job["run_seconds"].as_f64().unwrap_or(0.0);
    assert!(seconds > 0.0, "no run time: {job}");
    samples / seconds
}

/// Scores a weights file on the 10,000 Fashion-MNIST test images with NumPy alone.
fn numpy_test_accuracy(weights: &Path) -> f64 {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/score_weights.py");
    let out = Command::new(common::venv_python())
        .arg(script)
        .arg(weights)
        .args(["--dataset", "fashion-test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "scoring failed: {}", stderr(&out));
    let scored: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(scored["count"], 10_000, "{scored}");
    scored["accuracy"].as_f64().unwrap()
}

#[test]
fn engine_client_selftest() {
    // The client's own pieces without a node: its HS256 JWT against the jwt.io vector, the
    // IDX reading, the batch encoding and the test split's refusal.
    let out = Command::new(common::venv_python())
        .arg(client_script())
        .args(["--scenario", "selftest", "--out"])
        .arg(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
}

#[test]
fn engine_trains_fashion_mnist_over_the_stream() {
    let p = start(90_000, "");
    let max_chunk = MAX_CHUNK.to_string();
    let summary = engine(&p, "train", &["--epochs", "3", "--max-chunk", &max_chunk]);
    let reservation = summary["reservation"].as_str().unwrap();
    let job1 = &summary["job1"];
    let result_hash = job1["complete"]["result_hash"].as_str().unwrap();
    for key in ["job1", "job2"] {
        let job = &summary[key];
        eprintln!(
            "{key}: {} progress messages, served {} (largest requests {}), {}s; complete {}\n  {}",
            job["progress_messages"],
            job["served_samples"],
            job["largest_request"],
            job["seconds"],
            job["complete"],
            job["sequence"]
        );
    }

    // NumPy scores what came down the wire.
    let weights = PathBuf::from(summary["weights"]["path"].as_str().unwrap());
    let accuracy = numpy_test_accuracy(&weights);
    eprintln!(
        "P2P Fashion-MNIST MLP, 3 epochs: NumPy test accuracy {accuracy:.4} on 10,000 t10k images"
    );
    assert!(accuracy >= 0.84, "test accuracy {accuracy} below 0.84");

    // The node's own record of the reservation's two jobs.
    let seen = reservation_jobs(&p.node, reservation);
    assert_eq!(seen.len(), 2, "two jobs in the reservation: {seen:#?}");
    for job in &seen {
        assert_eq!(job["origin"], "p2p", "{job}");
        assert_eq!(job["state"], "succeeded", "{job}");
    }
    assert_eq!(seen[0]["weights_sha256"], result_hash, "{}", seen[0]);
    assert_eq!(seen[0]["epoch"], 3, "{}", seen[0]);
    assert_eq!(
        seen[1]["weights_sha256"], summary["job2"]["complete"]["result_hash"],
        "{}",
        seen[1]
    );
    let remote = samples_per_second(&seen[0]);

    // The same job on the node's own copy of the dataset (10,000 of 60,000 held out, like the
    // Engine's validation split), for the stream's cost.
    let graph = p.node.data_dir().join("engine-mlp.json");
    let out = Command::new(common::venv_python())
        .arg(client_script())
        .arg("--print-graph")
        .output()
        .unwrap();
    std::fs::write(&graph, &out.stdout).unwrap();
    let out = p.node.cli(&[
        "jobs",
        "submit",
        "--graph",
        graph.to_str().unwrap(),
        "--dataset",
        "builtin://fashion-mnist",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--validation-split",
        "0.16667",
        "--seed",
        "7",
    ]);
    assert!(out.status.success(), "submit failed: {}", stderr(&out));
    let local_id = stdout(&out).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(900);
    let local = loop {
        let job = jobs(&p.node)
            .into_iter()
            .find(|j| j["id"] == local_id.as_str())
            .unwrap();
        if ended(&job) {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the local job never ended: {job}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(local["state"], "succeeded", "{local}");
    let local_rate = samples_per_second(&local);
    eprintln!(
        "samples/s, Fashion-MNIST MLP, 3 epochs, batch 64, 1 thread: remote://engine {remote:.0} \
         (node's progress median {}, Engine side {}; the Python Engine used {} CPU-seconds \
         on this machine), builtin://fashion-mnist {local_rate:.0}; stream/local = {:.2}",
        job1["node_samples_per_second_median"],
        job1["engine_samples_per_second"],
        summary["client_cpu_seconds"],
        remote / local_rate
    );
    p.running.stop();
}

#[test]
fn token_refusals() {
    // Tokens may be at most 120 s old here; the client's stale token is an hour old.
    let p = start(120, "");
    let summary = engine(&p, "refusals", &[]);
    for case in summary["cases"].as_array().unwrap() {
        eprintln!("{:<60} {}", case["case"].as_str().unwrap(), case["got"]);
    }
    // Nothing the refused calls asked for ran.
    assert!(jobs(&p.node).is_empty(), "{:#?}", jobs(&p.node));
    p.running.stop();
}

#[test]
fn cancel_and_stop() {
    let p = start(90_000, "");
    let summary = engine(&p, "cancel", &[]);
    for how in ["cancel", "stop"] {
        let run = &summary[how];
        eprintln!(
            "{how}: the job ended {}s after it was asked ({}), partial weights {} bytes; \
             batches asked while paused: {}",
            run["seconds_to_end"],
            run["ended"],
            run["weights"]["bytes"],
            run["paused_requests_after_1s"]
        );
        let seconds = run["seconds_to_end"].as_f64().unwrap();
        assert!(seconds < 20.0, "{how}: the job took {seconds}s to end");
        let reservation = run["reservation"].as_str().unwrap();
        let seen = reservation_jobs(&p.node, reservation);
        assert_eq!(seen.len(), 1, "{seen:#?}");
        assert!(
            ended(&seen[0]) && seen[0]["state"] != "succeeded",
            "{how}: {}",
            seen[0]
        );
        assert!(
            seen[0]["epoch"].as_u64().unwrap() < 50,
            "{how}: the job ran to its end: {}",
            seen[0]
        );
        let weights = PathBuf::from(seen[0]["dir"].as_str().unwrap()).join("weights.safetensors");
        assert!(weights.is_file(), "{how}: partial weights kept");
        assert_eq!(
            std::fs::metadata(&weights).unwrap().len(),
            run["weights"]["bytes"].as_u64().unwrap(),
            "{how}: the downloaded partial weights are the job's file"
        );
    }
    // The checkpoint the Engine asked for over the stream is a real network (one epoch).
    let checkpoint = &summary["stop"]["checkpoint"];
    let accuracy = numpy_test_accuracy(Path::new(checkpoint["path"].as_str().unwrap()));
    eprintln!(
        "checkpoint after epoch {}: NumPy test accuracy {accuracy:.4}; the node's answer to \
         update_params: {}",
        checkpoint["epoch"], summary["stop"]["update_params_answer"]
    );
    assert!(accuracy >= 0.75, "checkpoint accuracy {accuracy}");
    p.running.stop();
}

#[test]
fn a_silent_engine_times_out_into_a_job_error() {
    let p = start(90_000, "batch_timeout_seconds = 3");
    let summary = engine(&p, "silent", &[]);
    eprintln!(
        "the Engine went silent; the job ended {}s later: {}",
        summary["seconds_to_end"], summary["error"]
    );
    let seen = reservation_jobs(&p.node, summary["reservation"].as_str().unwrap());
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0]["state"], "failed", "{}", seen[0]);
    let error = seen[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("batch_timeout_seconds"), "{}", seen[0]);
    p.running.stop();
}

#[test]
fn a_broken_engine_fails_its_jobs_cleanly_and_the_reservation_goes_on() {
    let p = start(90_000, "");
    let summary = engine(&p, "hostile", &[]);
    for case in summary["cases"].as_array().unwrap() {
        eprintln!(
            "{}: {} {}",
            case["sabotage"], case["error"], case["complete"]
        );
    }
    let seen = reservation_jobs(&p.node, summary["reservation"].as_str().unwrap());
    let states: Vec<&str> = seen.iter().map(|j| j["state"].as_str().unwrap()).collect();
    // The refused dataset may never become a job; the others did, and only the last succeeded.
    assert_eq!(states.last(), Some(&"succeeded"), "{seen:#?}");
    assert!(
        states[..states.len() - 1].iter().all(|s| *s == "failed"),
        "{seen:#?}"
    );
    p.running.stop();
}

/// `jobs show <id> --json`.
fn show(node: &Node, id: &str) -> serde_json::Value {
    let out = node.cli(&["jobs", "show", id, "--json"]);
    assert!(out.status.success(), "jobs show failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn update_params_retunes_a_running_job_at_its_next_epoch() {
    // A 3-epoch job on 6,000 training images: during epoch 1 the Engine asks for learning
    // rate 0.0005 and batches of 128; in epoch 2 for a learning rate of 1e9 (refused). The
    // client holds the job's batch requests until the node answers each command, so the node
    // may wait longer than usual for a batch on a busy machine.
    let p = start(90_000, "batch_timeout_seconds = 600");
    let summary = engine(&p, "retune", &[]);
    eprintln!(
        "update_params answers: {}\n  and {}\nretune on the stream: {}\n(epoch, total_batches) \
         of progress before / after it: {}; the job took {}s",
        summary["accepted_answer"],
        summary["refused_answer"],
        summary["retuned_logs"],
        summary["total_batches"],
        summary["job"]["seconds"]
    );
    let reservation = summary["reservation"].as_str().unwrap();
    let seen = reservation_jobs(&p.node, reservation);
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let id = seen[0]["id"].as_str().unwrap();
    let job = show(&p.node, id);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["epoch"], 3, "{job}");
    assert_eq!(
        job["weights_sha256"], summary["job"]["complete"]["result_hash"],
        "{job}"
    );
    // The job's stored config has the new values (the refused learning rate left no trace).
    assert_eq!(job["config"]["batch_size"], 128, "{job}");
    let lr = job["config"]["learning_rate"].as_f64().unwrap();
    assert!((lr - 0.0005).abs() < 1e-12, "learning_rate {lr}: {job}");
    // And its log says when they applied, once.
    let out = p.node.cli(&["jobs", "logs", id]);
    assert!(out.status.success(), "jobs logs failed: {}", stderr(&out));
    let log = stdout(&out);
    let retuned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("retuned after epoch"))
        .collect();
    assert_eq!(retuned.len(), 1, "{log}");
    assert!(
        retuned[0].contains("retuned after epoch 1: learning_rate 0.0005, batch_size 128"),
        "{log}"
    );
    p.running.stop();
}

#[test]
fn start_new_job_runs_on_the_idle_stream_and_an_ended_reservation_takes_nothing() {
    let p = start(90_000, "");
    let summary = engine(&p, "next_job", &[]);
    eprintln!(
        "StartNewJob: {}; the second job's stream: {}\nafter reservation_end: {}",
        summary["start_new_job"], summary["job2"]["sequence"], summary["after_end"]
    );
    let reservation = summary["reservation"].as_str().unwrap();
    let seen = reservation_jobs(&p.node, reservation);
    let ids: Vec<&str> = seen.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [reservation, summary["job2"]["job_id"].as_str().unwrap()],
        "{seen:#?}"
    );
    for job in &seen {
        assert_eq!(job["state"], "succeeded", "{job}");
    }
    p.running.stop();
}
