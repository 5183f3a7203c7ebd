//! What the central server hears of an Engine's P2P reservation, end to end: the node registers
//! with the test coordinator (tests/tests/coordinator) and adopts its id, the Python Engine
//! client (tests/fixtures/engine_client.py, scenario `reserve`) drives a 1-epoch Fashion-MNIST
//! job over JobExecutionService with a token minted for that id, and the coordinator's record
//! shows the node busy while the reservation lasts (heartbeats list the reservation in
//! `active_jobs` while the job runs and while the reservation sits idle, not after
//! `reservation_end`), exactly one `ReportJobCompleteFromNode` for the job and exactly one
//! `ReportReservationEndFromNode`, both through the node's outbox.

mod central_common;
mod common;
mod coordinator;

use central_common::free_port_pair;
use common::{stderr, stdout, Node, Running};
use coordinator::{Coordinator, Seen};
use cyxwiz_proto::protocol::HeartbeatRequest;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The central server's JWT secret in this test (`[p2p] jwt_secret`).
const SECRET: &str = "p2p-central-e2e-secret-that-signs-reservation-tokens";

/// The node's Bearer token for the coordinator.
const TOKEN: &str = "tok";

/// A node that reports to `central` (heartbeat every second), takes P2P tokens signed with
/// [`SECRET`], runs the Engine's CUDA jobs on the CPU with one thread, and waits long for a
/// batch (the client holds batch requests while the test looks at the coordinator).
fn p2p_node(central: std::net::SocketAddr) -> Node {
    let node = Node::new();
    node.write_config(&format!(
        r#"
[node]
name = "p2p-worker"
wallet_address = "wallet-p2p-central"

[central_server]
address = "{central}"
auth_token = "{TOKEN}"
heartbeat_interval_seconds = 1
reconnect_delay_seconds = 1

[grpc]
host = "127.0.0.1"

[jobs]
threads_per_job = 1
cuda_jobs_on_cpu = "run_on_cpu"

[p2p]
jwt_secret = "{SECRET}"
batch_timeout_seconds = 600
"#
    ));
    node
}

fn start_node(node: &Node, grpc: u16) -> Running {
    let ports = format!("{grpc},{}", grpc + 3);
    tokio::task::block_in_place(|| node.start(&["--grpc-ports", &ports]))
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

/// Whether a heartbeat counts `reservation` as work: its id, or one of its jobs
/// (`<reservation>_<suffix>`).
fn lists(beat: &HeartbeatRequest, reservation: &str) -> bool {
    let prefix = format!("{reservation}_");
    beat.active_jobs
        .iter()
        .any(|j| j == reservation || j.starts_with(&prefix))
}

/// Whether a heartbeat keeps the node busy for `reservation`: it lists it, and carries
/// `current_status` (the server computes the load from `active_jobs` only when it is there).
fn busy(beat: &HeartbeatRequest, reservation: &str) -> bool {
    beat.current_status.is_some() && lists(beat, reservation)
}

/// The heartbeats of `id` that arrived after `after`, in order.
fn beats_after(seen: &Seen, id: &str, after: Instant) -> Vec<HeartbeatRequest> {
    seen.nodes
        .get(id)
        .map(|n| {
            n.heartbeats
                .iter()
                .filter(|(t, _)| *t > after)
                .map(|(_, b)| b.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `n` heartbeats of `id` arrived after `after`; those heartbeats.
async fn next_beats(
    central: &Coordinator,
    id: &str,
    after: Instant,
    n: usize,
    what: &str,
) -> Vec<HeartbeatRequest> {
    central
        .wait_for(what, Duration::from_secs(60), |s| {
            beats_after(s, id, after).len() >= n
        })
        .await;
    beats_after(&central.seen.lock().unwrap(), id, after)
}

/// Waits for the client's marker file `dir/point` (the client stands still there), failing
/// early if the client exited.
async fn at_point(client: &mut Child, dir: &Path, point: &str, log: &Path) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if dir.join(point).exists() {
            return Instant::now();
        }
        if let Some(status) = client.try_wait().unwrap() {
            panic!(
                "the Engine client exited ({status}) before the point `{point}`:\n{}\n{}",
                std::fs::read_to_string(log.with_extension("out")).unwrap_or_default(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the client never reached `{point}`"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/engine_client.py")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_keeps_the_node_busy_and_is_reported_once_through_the_outbox() {
    let test_started = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let central = Coordinator::start("127.0.0.1:0".parse().unwrap(), TOKEN, seen.clone()).await;
    let node = p2p_node(central.addr);
    let grpc = free_port_pair();
    let running = start_node(&node, grpc);
    let node_id = registered(&central, grpc).await;

    // The node adopted the coordinator's id: the Engine's token is minted for it.
    let out = tokio::task::block_in_place(|| node.cli(&["status", "--json"]));
    assert!(out.status.success(), "status failed: {}", stderr(&out));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["node"]["id"], node_id.as_str(), "{status}");
    let registered_after = test_started.elapsed();

    // The Engine client, stopping at its points `running` and `idle` until told to go on.
    let reservation = uuid::Uuid::new_v4().to_string();
    let dir = node.data_dir().join("engine-reserve");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("client.log");
    let client_started = Instant::now();
    let mut client = Command::new(cyxwiz_e2e::venv_python())
        .arg(client_script())
        .args(["--scenario", "reserve", "--node"])
        .arg(format!("127.0.0.1:{grpc}"))
        .args(["--secret", SECRET, "--node-id", &node_id])
        .args([
            "--reservation",
            &reservation,
            "--job-timeout",
            "600",
            "--out",
        ])
        .arg(&dir)
        .stdout(Stdio::from(
            std::fs::File::create(log.with_extension("out")).unwrap(),
        ))
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();

    // While the job runs (it waits on held batch requests): every heartbeat lists the
    // reservation (the first two after the client got there, all that came meanwhile).
    let held = at_point(&mut client, &dir, "running", &log).await;
    let running_beats = next_beats(&central, &node_id, held, 2, "heartbeats while running").await;
    assert!(
        running_beats.iter().all(|b| busy(b, &reservation)),
        "a heartbeat while the job ran does not list reservation {reservation}: {:?}",
        running_beats
            .iter()
            .map(|b| &b.active_jobs)
            .collect::<Vec<_>>()
    );
    std::fs::write(dir.join("running.go"), "").unwrap();

    // After `complete`, the reservation is open and idle: still busy.
    let idle = at_point(&mut client, &dir, "idle", &log).await;
    let idle_beats = next_beats(&central, &node_id, idle, 2, "heartbeats while idle").await;
    assert!(
        idle_beats.iter().all(|b| busy(b, &reservation)),
        "a heartbeat of the idle reservation does not list {reservation}: {:?}",
        idle_beats
            .iter()
            .map(|b| &b.active_jobs)
            .collect::<Vec<_>>()
    );
    std::fs::write(dir.join("idle.go"), "").unwrap();

    // `reservation_end`: the client exits once the node closed the stream.
    let exit = tokio::task::block_in_place(|| client.wait()).unwrap();
    let ended = Instant::now();
    let notes = std::fs::read_to_string(&log).unwrap_or_default();
    let text = std::fs::read_to_string(log.with_extension("out")).unwrap_or_default();
    eprintln!("{notes}");
    let summary: serde_json::Value = serde_json::from_str(text.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("the Engine client printed no summary ({e}):\n{text}\n{notes}"));
    assert!(
        exit.success() && summary["ok"] == true,
        "the Engine client's checks failed: {}",
        serde_json::to_string_pretty(&summary).unwrap()
    );
    assert_eq!(summary["reservation"], reservation.as_str());
    let result_hash = summary["job"]["complete"]["result_hash"]
        .as_str()
        .unwrap()
        .to_string();

    // Both reports arrive through the outbox.
    central
        .wait_for(
            "ReportJobCompleteFromNode and ReportReservationEndFromNode",
            Duration::from_secs(120),
            |s| {
                s.job_completes_from_node
                    .iter()
                    .any(|r| r.reservation_id == reservation)
                    && s.reservation_ends
                        .iter()
                        .any(|r| r.reservation_id == reservation)
            },
        )
        .await;
    let reported = ended.elapsed();

    // Well after the end (the first heartbeat after the client's exit may have been built
    // before it): no heartbeat lists the reservation; meanwhile no report comes twice.
    let after_beats = next_beats(&central, &node_id, ended, 3, "heartbeats after the end").await;
    assert!(
        after_beats[1..].iter().all(|b| !lists(b, &reservation)),
        "heartbeats after reservation_end still list {reservation}: {:?}",
        after_beats
            .iter()
            .map(|b| &b.active_jobs)
            .collect::<Vec<_>>()
    );

    let s = seen.lock().unwrap();
    let completes: Vec<_> = s
        .job_completes_from_node
        .iter()
        .filter(|r| r.reservation_id == reservation || r.job_id == reservation)
        .cloned()
        .collect();
    assert_eq!(
        completes.len(),
        1,
        "one ReportJobCompleteFromNode: {completes:#?}"
    );
    let complete = &completes[0];
    assert_eq!(complete.reservation_id, reservation, "{complete:?}");
    assert_eq!(complete.job_id, reservation, "{complete:?}");
    assert_eq!(complete.node_id, node_id, "{complete:?}");
    assert!(complete.success, "{complete:?}");
    assert_eq!(complete.model_hash, result_hash, "{complete:?}");
    assert_eq!(complete.epochs_completed, 1, "{complete:?}");
    assert!(
        complete.final_metrics.contains_key("loss"),
        "final_metrics: {complete:?}"
    );
    let ends: Vec<_> = s
        .reservation_ends
        .iter()
        .filter(|r| r.reservation_id == reservation)
        .cloned()
        .collect();
    assert_eq!(ends.len(), 1, "one ReportReservationEndFromNode: {ends:#?}");
    let end = &ends[0];
    assert_eq!(end.node_id, node_id, "{end:?}");
    assert_eq!(end.jobs_completed, 1, "{end:?}");
    assert!(end.node_available, "{end:?}");
    assert_eq!(
        end.total_compute_time, complete.training_time_seconds,
        "the reservation's compute time is its one job's: {end:?} vs {complete:?}"
    );
    // Nothing else went wrong on the coordinator's side.
    assert_eq!(s.refused, 0, "calls with a bad token");
    assert_eq!(s.unknown_heartbeats, 0, "heartbeats from an unknown id");
    assert_eq!(s.reservation_ends.len(), 1, "{:#?}", s.reservation_ends);
    assert_eq!(
        s.job_completes_from_node.len(),
        1,
        "{:#?}",
        s.job_completes_from_node
    );
    drop(s);

    eprintln!(
        "registered in {:.1}s; the job took {}s (the client's count, the hold included); client ran \
         {:.1}s; reports at the coordinator {:.1}s after the client's exit; heartbeats while \
         running {:?}, idle {:?}, after the end {:?}; ReportJobCompleteFromNode {complete:?}; \
         ReportReservationEndFromNode {end:?}; test {:.1}s",
        registered_after.as_secs_f64(),
        summary["job"]["seconds"],
        ended.duration_since(client_started).as_secs_f64(),
        reported.as_secs_f64(),
        running_beats
            .iter()
            .map(|b| &b.active_jobs)
            .collect::<Vec<_>>(),
        idle_beats
            .iter()
            .map(|b| &b.active_jobs)
            .collect::<Vec<_>>(),
        after_beats
            .iter()
            .map(|b| &b.active_jobs)
            .collect::<Vec<_>>(),
        test_started.elapsed().as_secs_f64()
    );
    tokio::task::block_in_place(|| running.stop());
}
