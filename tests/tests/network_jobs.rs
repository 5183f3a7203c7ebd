//! Jobs the central server pushes (NodeService.AssignJob) and the reports the node owes it,
//! against the test coordinator (tests/tests/coordinator): a digits CNN is accepted at once,
//! trains, and is reported as the real server expects (ReportProgress IN_PROGRESS, one
//! UpdateJobStatus per epoch, exactly one ReportJobResult STATUS_SUCCESS whose hash is the
//! sha256 of the weights the node serves over HTTP, scored by NumPy); a repeated AssignJob runs
//! nothing twice; the reports wait out a central outage and arrive once; `kill -9` of the node
//! mid-job ends in exactly one result; a heartbeat's `jobs_to_cancel` cancels the job and
//! reports it FAILED; a job whose validation outlasts the answer (a large CSV) is accepted
//! and its failure still reaches the central server; a Fashion-MNIST job (the slowest built-in
//! dataset to validate) is answered and reported. Real node binary, real training
//! (train-candle), real gRPC on loopback.

mod central_common;
mod common;
mod coordinator;

use central_common::free_port_pair;
use common::{stderr, stdout, Node, Running};
use coordinator::{Coordinator, Seen};
use cyxwiz_proto::protocol::{DeviceType, JobConfig, JobType, StatusCode};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A small CNN in the plain form, for the 8×8 digits (as in training.rs).
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

/// A small MLP for the digits (fast; for jobs that only have to run a while).
const PLAIN_MLP: &str = r#"{
  "layers": [{"type": "flatten"}, {"type": "dense", "units": 32, "activation": "relu"},
             {"type": "dense", "units": 10}],
  "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9}}"#;

/// A networked node's data directory: config (central server, one thread per job) and the
/// digits CSV where `builtin://digits` looks for it.
fn networked_node(central: std::net::SocketAddr) -> Node {
    networked_node_with(central, "", "")
}

/// `networked_node` with more `[node]` and `[jobs]` lines.
fn networked_node_with(central: std::net::SocketAddr, node_extra: &str, jobs_extra: &str) -> Node {
    let node = Node::new();
    node.write_config(&format!(
        r#"
[node]
name = "worker"
wallet_address = "wallet-network-jobs"
{node_extra}

[central_server]
address = "{central}"
auth_token = "tok"
heartbeat_interval_seconds = 1
reconnect_delay_seconds = 1

[grpc]
host = "127.0.0.1"

[jobs]
threads_per_job = 1
{jobs_extra}
"#
    ));
    let csv = cyxwiz_e2e::models_dir().join("datasets/digits.csv.gz");
    let dest = node.data_dir().join("models/datasets");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::copy(csv, dest.join("digits.csv.gz")).unwrap();
    node
}

fn start_node(node: &Node, grpc: u16) -> Running {
    let ports = format!("{grpc},{}", grpc + 3);
    tokio::task::block_in_place(|| node.start(&["--grpc-ports", &ports]))
}

fn kill9(mut running: Running) {
    Command::new("kill")
        .args(["-KILL", &running.child.id().to_string()])
        .status()
        .unwrap();
    let _ = running.child.wait();
}

/// Waits until the coordinator knows the node at `grpc` and it heartbeats; its id.
async fn registered(central: &Coordinator, grpc: u16) -> String {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    central
        .wait_for("registration", Duration::from_secs(30), |s| {
            s.nodes.values().any(|n| {
                !n.heartbeats.is_empty()
                    && n.registration
                        .info
                        .as_ref()
                        .is_some_and(|i| i.port == i32::from(grpc))
            })
        })
        .await;
    central.node_at(addr).unwrap()
}

fn job(id: &str, graph: &str, epochs: i32, batch: i32, seed: u64) -> JobConfig {
    JobConfig {
        job_id: id.to_string(),
        job_type: JobType::Training as i32,
        model_definition: graph.to_string(),
        dataset_uri: "builtin://digits".into(),
        batch_size: batch,
        epochs,
        required_device: DeviceType::DeviceCpu as i32,
        estimated_memory: 256 << 20,
        hyperparameters: [
            ("seed".to_string(), seed.to_string()),
            ("validation_split".to_string(), "0.2".to_string()),
            // Not used by the node: ignored and noted in the job's log.
            ("warmup_steps".to_string(), "100".to_string()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

/// `jobs show ID --json`.
fn show(node: &Node, id: &str) -> serde_json::Value {
    let out = tokio::task::block_in_place(|| node.cli(&["jobs", "show", id, "--json"]));
    assert!(out.status.success(), "show failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

async fn wait_job(
    node: &Node,
    id: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let job = show(node, id);
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job never {what}: {job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ended(job: &serde_json::Value) -> bool {
    matches!(
        job["state"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// GET `url` (`http://host:port/path`) over HTTP/1.1; status and body bytes.
fn http_get(url: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
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
    (status, raw[split + 4..].to_vec())
}

/// Scores a weights file with NumPy alone (tests/fixtures/score_weights.py).
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

/// The reports the coordinator accepted for `id`: (ReportProgress statuses, UpdateJobStatus
/// epochs, ReportJobResult count).
fn reports_of(seen: &Seen, id: &str) -> (Vec<i32>, Vec<i32>, usize) {
    let progress = seen
        .progress_reports
        .iter()
        .filter(|r| r.job_id == id)
        .map(|r| r.status.as_ref().map_or(0, |s| s.status))
        .collect();
    let epochs = seen
        .job_updates
        .iter()
        .filter(|u| u.job_id == id)
        .map(|u| u.current_epoch)
        .collect();
    let results = seen.job_results.iter().filter(|r| r.job_id == id).count();
    (progress, epochs, results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assigned_cnn_is_accepted_at_once_trains_and_is_reported_exactly_once() {
    let test_started = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let central = Coordinator::start("127.0.0.1:0".parse().unwrap(), "tok", seen.clone()).await;
    let node = networked_node(central.addr);
    let grpc = free_port_pair();
    let running = start_node(&node, grpc);
    let node_id = registered(&central, grpc).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();

    let id = uuid::Uuid::new_v4().to_string();
    let epochs = 20;
    let config = job(&id, PLAIN_CNN, epochs, 32, 11);
    let asked = Instant::now();
    let answer = central.assign_job(addr, config.clone()).await.unwrap();
    let reply_time = asked.elapsed();
    println!(
        "AssignJob answered in {:.1} ms",
        reply_time.as_secs_f64() * 1000.0
    );
    assert!(answer.accepted, "{answer:?}");
    assert_eq!(answer.status, StatusCode::StatusSuccess as i32);
    assert_eq!(answer.job_id, id);
    assert!(answer.error.is_none(), "{answer:?}");

    // Assigned again (the scheduler retrying): accepted, and still one job.
    let again = central.assign_job(addr, config).await.unwrap();
    assert!(again.accepted, "{again:?}");
    let out = tokio::task::block_in_place(|| node.cli(&["jobs", "list", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let same: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["id"] == id.as_str())
        .collect();
    assert_eq!(same.len(), 1, "{list}");
    assert_eq!(same[0]["origin"], "central", "{list}");

    central
        .wait_for("the job's result", Duration::from_secs(600), |s| {
            reports_of(s, &id).2 >= 1
        })
        .await;
    let job_view = wait_job(&node, &id, "ended", ended).await;
    assert_eq!(job_view["state"], "succeeded", "{job_view}");
    // Nothing more arrives after the result (none is sent twice).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let s = seen.lock().unwrap();
    let (progress, epoch_updates, results) = reports_of(&s, &id);
    assert_eq!(
        progress,
        [StatusCode::StatusInProgress as i32],
        "one ReportProgress IN_PROGRESS"
    );
    assert_eq!(
        epoch_updates,
        (1..=epochs).collect::<Vec<_>>(),
        "one UpdateJobStatus per epoch, in order"
    );
    assert_eq!(results, 1, "exactly one ReportJobResult");
    let first_progress = s
        .progress_reports
        .iter()
        .position(|r| r.job_id == id)
        .unwrap();
    assert_eq!(s.progress_reports[first_progress].node_id, node_id);
    for u in s.job_updates.iter().filter(|u| u.job_id == id) {
        assert_eq!(u.status, StatusCode::StatusInProgress as i32);
        assert!((0.0..=1.0).contains(&u.progress), "{u:?}");
        assert!(u.metrics.contains_key("loss"), "{u:?}");
        assert_eq!(u.node_id, node_id);
    }
    let last = s.job_updates.iter().rfind(|u| u.job_id == id).unwrap();
    assert_eq!(last.progress, 1.0);
    let result = s
        .job_results
        .iter()
        .find(|r| r.job_id == id)
        .unwrap()
        .clone();
    drop(s);
    assert_eq!(result.final_status, 1, "STATUS_SUCCESS: {result:?}");
    assert_eq!(result.node_id, node_id);
    assert!(result.error_message.is_empty(), "{result:?}");
    assert!(result.total_compute_time > 0, "milliseconds: {result:?}");
    let expected_uri = format!("http://{}/v1/jobs/{id}/weights", running.addr);
    assert_eq!(result.model_weights_uri, expected_uri);

    // The reported hash and size are those of the weights the node serves over HTTP.
    let (status, weights) = tokio::task::block_in_place(|| http_get(&result.model_weights_uri));
    assert_eq!(status, 200);
    assert_eq!(result.model_weights_hash, sha256_hex(&weights));
    assert_eq!(result.model_size, weights.len() as i64);
    assert_eq!(
        job_view["weights_sha256"],
        result.model_weights_hash.as_str()
    );

    // Real training: NumPy scores the weights on the held-out digits as the node reported.
    let dir = PathBuf::from(job_view["dir"].as_str().unwrap());
    let scored = score(
        &dir.join("weights.safetensors"),
        "digits-validation",
        11,
        0.2,
    );
    let accuracy = scored["accuracy"].as_f64().unwrap();
    println!("digits held-out accuracy (NumPy): {accuracy:.4}");
    assert!(accuracy >= 0.95, "held-out accuracy {accuracy} below 0.95");
    let reported = result.final_metrics["val_accuracy"];
    assert!(
        (reported - accuracy).abs() < 1e-6,
        "{reported} vs {accuracy}"
    );
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    assert!(
        log.contains("warmup_steps"),
        "ignored keys are noted: {log}"
    );

    // The acceptance is audited, and the outbox holds nothing more to send.
    let store = cyxwiz_node::store::Store::open(&node.data_dir().join("node.db")).unwrap();
    let audit = store.recent_audit(1000).unwrap();
    assert!(
        audit
            .iter()
            .any(|(_, kind, subject, _)| kind == "job_accepted" && *subject == id),
        "{audit:?}"
    );
    let counts = store.outbox_counts().unwrap();
    assert_eq!(
        (counts.pending, counts.acked, counts.failed),
        (0, epochs as u64 + 2, 0),
        "start, one per epoch and the result, each acknowledged once"
    );
    println!("test time {:.1} s", test_started.elapsed().as_secs_f64());
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_node_cannot_run_is_declined_with_the_reason() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let central = Coordinator::start("127.0.0.1:0".parse().unwrap(), "tok", seen.clone()).await;
    let node = networked_node(central.addr);
    let grpc = free_port_pair();
    let _running = start_node(&node, grpc);
    registered(&central, grpc).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let id = || uuid::Uuid::new_v4().to_string();
    let cases: Vec<(JobConfig, &str)> = vec![
        (
            JobConfig {
                model_definition: r#"{"layers": [{"type": "warp"}], "loss": "mse"}"#.into(),
                ..job(&id(), PLAIN_MLP, 1, 16, 1)
            },
            "layers[0]",
        ),
        (
            JobConfig {
                dataset_uri: "builtin://imagenet".into(),
                ..job(&id(), PLAIN_MLP, 1, 16, 1)
            },
            "imagenet",
        ),
        (
            JobConfig {
                hyperparameters: [("learning_rate".to_string(), "fast".to_string())]
                    .into_iter()
                    .collect(),
                ..job(&id(), PLAIN_MLP, 1, 16, 1)
            },
            "hyperparameters.learning_rate",
        ),
        (
            JobConfig {
                required_device: DeviceType::DeviceCuda as i32,
                ..job(&id(), PLAIN_MLP, 1, 16, 1)
            },
            "cuda_jobs_on_cpu",
        ),
        (job("not-a-uuid", PLAIN_MLP, 1, 16, 1), "UUID"),
    ];
    let has_gpu = std::path::Path::new("/dev/nvidia0").exists();
    for (config, why) in cases {
        if has_gpu && why == "cuda_jobs_on_cpu" {
            continue;
        }
        let job_id = config.job_id.clone();
        let answer = central.assign_job(addr, config).await.unwrap();
        assert!(!answer.accepted, "{job_id}: {answer:?}");
        let message = answer.error.unwrap().message;
        assert!(message.contains(why), "{why}: {message}");
    }
    let out = tokio::task::block_in_place(|| node.cli(&["jobs", "list", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0, "nothing queued: {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_wait_out_a_central_outage_and_arrive_once() {
    let test_started = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut central = Coordinator::start("127.0.0.1:0".parse().unwrap(), "tok", seen.clone()).await;
    let node = networked_node(central.addr);
    let grpc = free_port_pair();
    let _running = start_node(&node, grpc);
    registered(&central, grpc).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let epochs = 12;
    let answer = central
        .assign_job(addr, job(&id, PLAIN_MLP, epochs, 16, 3))
        .await
        .unwrap();
    assert!(answer.accepted, "{answer:?}");
    central
        .wait_for("IN_PROGRESS", Duration::from_secs(60), |s| {
            !reports_of(s, &id).0.is_empty()
        })
        .await;

    // The central server dies; the job trains on and ends while it is away.
    central.kill().await;
    let down_at = reports_of(&seen.lock().unwrap(), &id);
    let job_view = wait_job(&node, &id, "ended", ended).await;
    assert_eq!(job_view["state"], "succeeded", "{job_view}");
    assert_eq!(
        reports_of(&seen.lock().unwrap(), &id),
        down_at,
        "nothing arrives while the server is down"
    );
    let back = Instant::now();
    central.restart().await;
    central
        .wait_for(
            "the result after the outage",
            Duration::from_secs(60),
            |s| reports_of(s, &id).2 >= 1,
        )
        .await;
    println!(
        "reports delivered {:.1} s after the central server came back",
        back.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (progress, epoch_updates, results) = reports_of(&seen.lock().unwrap(), &id);
    assert_eq!(progress, [StatusCode::StatusInProgress as i32]);
    assert_eq!(epoch_updates, (1..=epochs).collect::<Vec<_>>());
    assert_eq!(results, 1);
    let s = seen.lock().unwrap();
    let result = s.job_results.iter().find(|r| r.job_id == id).unwrap();
    assert_eq!(result.final_status, StatusCode::StatusSuccess as i32);
    assert_eq!(
        result.model_weights_hash,
        job_view["weights_sha256"].as_str().unwrap()
    );
    println!("test time {:.1} s", test_started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_job_reports_one_result_after_its_restart() {
    let test_started = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let central = Coordinator::start("127.0.0.1:0".parse().unwrap(), "tok", seen.clone()).await;
    let node = networked_node(central.addr);
    let grpc = free_port_pair();
    let running = start_node(&node, grpc);
    registered(&central, grpc).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let epochs = 40;
    let answer = central
        .assign_job(addr, job(&id, PLAIN_MLP, epochs, 16, 5))
        .await
        .unwrap();
    assert!(answer.accepted, "{answer:?}");
    central
        .wait_for("two epochs reported", Duration::from_secs(120), |s| {
            reports_of(s, &id).1.len() >= 2
        })
        .await;
    kill9(running);
    let at_kill = reports_of(&seen.lock().unwrap(), &id);
    assert_eq!(at_kill.2, 0, "killed before the job ended");

    let _running = start_node(&node, grpc);
    let job_view = wait_job(&node, &id, "ended", ended).await;
    central
        .wait_for(
            "the result after the restart",
            Duration::from_secs(60),
            |s| reports_of(s, &id).2 >= 1,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = seen.lock().unwrap();
    let (progress, epoch_updates, results) = reports_of(&s, &id);
    assert_eq!(results, 1, "exactly one result");
    assert_eq!(
        progress,
        [StatusCode::StatusInProgress as i32],
        "a resumed job is no new start"
    );
    let result = s.job_results.iter().find(|r| r.job_id == id).unwrap();
    match job_view["state"].as_str() {
        Some("succeeded") => {
            assert_eq!(result.final_status, StatusCode::StatusSuccess as i32);
            assert_eq!(job_view["attempt"], 2, "{job_view}");
            // Every epoch reported; one interrupted before its checkpoint may be reported twice.
            for e in 1..=epochs {
                assert!(epoch_updates.contains(&e), "epoch {e}: {epoch_updates:?}");
            }
            assert!(
                epoch_updates.len() <= epochs as usize + 1,
                "{epoch_updates:?}"
            );
        }
        _ => {
            assert_eq!(result.final_status, StatusCode::StatusFailed as i32);
            assert!(!result.error_message.is_empty());
        }
    }
    println!(
        "job {} after kill -9; test time {:.1} s",
        job_view["state"],
        test_started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_to_cancel_cancels_the_job_and_reports_it_failed() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let central = Coordinator::start("127.0.0.1:0".parse().unwrap(), "tok", seen.clone()).await;
    let node = networked_node(central.addr);
    let grpc = free_port_pair();
    let _running = start_node(&node, grpc);
    registered(&central, grpc).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let answer = central
        .assign_job(addr, job(&id, PLAIN_MLP, 2000, 16, 2))
        .await
        .unwrap();
    assert!(answer.accepted, "{answer:?}");
    central
        .wait_for("an epoch reported", Duration::from_secs(60), |s| {
            !reports_of(s, &id).1.is_empty()
        })
        .await;
    // The job is among the heartbeat's active jobs while it runs.
    central
        .wait_for("the job in active_jobs", Duration::from_secs(10), |s| {
            s.nodes.values().any(|n| {
                n.heartbeats
                    .last()
                    .is_some_and(|(_, h)| h.active_jobs.contains(&id))
            })
        })
        .await;
    seen.lock().unwrap().to_cancel.push(id.clone());
    let job_view = wait_job(&node, &id, "cancelled", ended).await;
    assert_eq!(job_view["state"], "cancelled", "{job_view}");
    central
        .wait_for("the FAILED result", Duration::from_secs(30), |s| {
            reports_of(s, &id).2 >= 1
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = seen.lock().unwrap();
    assert_eq!(reports_of(&s, &id).2, 1);
    let result = s.job_results.iter().find(|r| r.job_id == id).unwrap();
    assert_eq!(result.final_status, StatusCode::StatusFailed as i32);
    assert!(result.error_message.contains("cancelled"), "{result:?}");
}

/// Reads the reply time and the path taken; both paths must get the reason to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_refused_after_a_slow_validation_still_reaches_the_server_failed() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let central = Coordinator::start("127.0.0.1:0".parse().unwrap(), "tok", seen.clone()).await;
    let node = networked_node(central.addr);
    // A large CSV (fixed contents) in the default dataset directory: slow to read.
    let datasets = node.data_dir().join("datasets");
    std::fs::create_dir_all(&datasets).unwrap();
    let csv = datasets.join("big.csv");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        let header: Vec<String> = (0..64).map(|i| format!("f{i}")).collect();
        writeln!(out, "{},label", header.join(",")).unwrap();
        let mut x: u64 = 7;
        for _ in 0..150_000 {
            let mut row = String::with_capacity(200);
            for _ in 0..64 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                row.push_str(&((x >> 59) as u8).to_string());
                row.push(',');
            }
            row.push_str(&((x >> 60) % 10).to_string());
            writeln!(out, "{row}").unwrap();
        }
    }
    let grpc = free_port_pair();
    let _running = start_node(&node, grpc);
    registered(&central, grpc).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    // The definition does not fit the data (63 inputs for 64 features): refused once the
    // dataset has been read.
    let graph =
        r#"{"input": [63], "layers": [{"type": "dense", "units": 10}], "loss": "cross_entropy"}"#;
    let config = JobConfig {
        dataset_uri: format!("file://{}", csv.display()),
        ..job(&id, graph, 1, 32, 1)
    };
    let asked = Instant::now();
    let answer = central.assign_job(addr, config).await.unwrap();
    println!(
        "AssignJob over a 150,000-row CSV answered in {:.0} ms, accepted = {}",
        asked.elapsed().as_secs_f64() * 1000.0,
        answer.accepted
    );
    if answer.accepted {
        // Accepted before the validation ended: the refusal arrives as the job's result.
        central
            .wait_for("the FAILED result", Duration::from_secs(120), |s| {
                reports_of(s, &id).2 >= 1
            })
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = seen.lock().unwrap();
        let (progress, updates, results) = reports_of(&s, &id);
        assert_eq!((progress.len(), updates.len(), results), (0, 0, 1));
        let result = s.job_results.iter().find(|r| r.job_id == id).unwrap();
        assert_eq!(result.final_status, StatusCode::StatusFailed as i32);
        assert!(result.error_message.contains("input"), "{result:?}");
    } else {
        let message = answer.error.unwrap().message;
        assert!(message.contains("input"), "{message}");
    }
    let out = tokio::task::block_in_place(|| node.cli(&["jobs", "list", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0, "nothing queued: {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fashion_mnist_job_is_answered_and_reported() {
    if !Path::new("/usr/share/datasets/fashion-mnist").is_dir() {
        panic!("the Debian package dataset-fashion-mnist is required");
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let central = Coordinator::start("127.0.0.1:0".parse().unwrap(), "tok", seen.clone()).await;
    let node = networked_node(central.addr);
    let grpc = free_port_pair();
    let _running = start_node(&node, grpc);
    registered(&central, grpc).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let config = JobConfig {
        dataset_uri: "builtin://fashion-mnist".into(),
        ..job(&id, PLAIN_MLP, 1, 64, 4)
    };
    let asked = Instant::now();
    let answer = central.assign_job(addr, config).await.unwrap();
    println!(
        "AssignJob of a Fashion-MNIST job answered in {:.0} ms",
        asked.elapsed().as_secs_f64() * 1000.0
    );
    assert!(answer.accepted, "{answer:?}");
    central
        .wait_for("the result", Duration::from_secs(300), |s| {
            reports_of(s, &id).2 >= 1
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = seen.lock().unwrap();
    let (progress, updates, results) = reports_of(&s, &id);
    assert_eq!((progress.len(), updates, results), (1, vec![1], 1));
    let result = s.job_results.iter().find(|r| r.job_id == id).unwrap();
    assert_eq!(
        result.final_status,
        StatusCode::StatusSuccess as i32,
        "{result:?}"
    );
    assert!(result.final_metrics["val_accuracy"] > 0.7, "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_declines_with_the_reason() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let central = Coordinator::start("127.0.0.1:0".parse().unwrap(), "tok", seen.clone()).await;
    let node = networked_node_with(
        central.addr,
        "max_concurrent_jobs = 1",
        "max_queued_jobs = 0",
    );
    let grpc = free_port_pair();
    let _running = start_node(&node, grpc);
    registered(&central, grpc).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let first = uuid::Uuid::new_v4().to_string();
    let answer = central
        .assign_job(addr, job(&first, PLAIN_MLP, 2000, 16, 1))
        .await
        .unwrap();
    assert!(answer.accepted, "{answer:?}");
    let second = uuid::Uuid::new_v4().to_string();
    let answer = central
        .assign_job(addr, job(&second, PLAIN_MLP, 1, 16, 1))
        .await
        .unwrap();
    assert!(!answer.accepted, "{answer:?}");
    let message = answer.error.unwrap().message;
    assert!(
        message.contains("queue is full") && message.contains("max_queued_jobs"),
        "{message}"
    );
    // The first one is still the node's, and a repeat of it is still accepted.
    let again = central
        .assign_job(addr, job(&first, PLAIN_MLP, 2000, 16, 1))
        .await
        .unwrap();
    assert!(again.accepted, "{again:?}");
}
