//! The real central server's quirks, against the test coordinator: a forgotten node whose
//! heartbeats still succeed is found by the registration check (GetNodeInfo) and registers
//! again; heartbeats carry the node's status and active jobs, and the uptime figure comes from
//! the metric history; a central server without the AssignJob port (+ 3) served is refused at
//! start; and the coordinator itself answers like the real server. Real node binary, real gRPC
//! on loopback.

mod central_common;
mod common;
mod coordinator;

use central_common::{free_port_pair, node_config, node_config_with, start_node, wait_status};
use common::{stderr, Node};
use coordinator::{Coordinator, Seen};
use cyxwiz_proto::protocol::{node_service_client::NodeServiceClient, StatusCode};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The coordinator itself answers as PROTOCOL.md says the real server does, so the node's tests
/// against it mean something: GetNodeInfo without a token (NOT_FOUND "Node not found" for an
/// unknown id), job reports only for jobs it assigned, every call but GetNodeInfo behind the
/// Bearer token, lenient heartbeats, the reservation reports, and its state across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_coordinator_answers_like_the_real_server() {
    use cyxwiz_proto::protocol::{
        job_reservation_service_client::JobReservationServiceClient,
        job_status_service_client::JobStatusServiceClient,
        node_discovery_service_client::NodeDiscoveryServiceClient, GetNodeInfoRequest,
        HeartbeatRequest, NodeInfo, RegisterNodeRequest, ReportJobCompleteFromNodeRequest,
        ReportJobResultRequest, ReportReservationEndFromNodeRequest, UpdateJobStatusRequest,
    };
    use tonic::{metadata::MetadataValue, Request};

    fn bearer<T>(message: T, token: &str) -> Request<T> {
        let mut request = Request::new(message);
        let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
        request
    }

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut central = Coordinator::start("127.0.0.1:0".parse().unwrap(), "tok", seen.clone()).await;
    let url = format!("http://{}", central.addr);
    let mut nodes = NodeServiceClient::connect(url.clone()).await.unwrap();
    let id = nodes
        .register_node(bearer(
            RegisterNodeRequest {
                info: Some(NodeInfo {
                    name: "n".into(),
                    ip_address: "127.0.0.1".into(),
                    port: 4242,
                    ..Default::default()
                }),
                authentication_token: "tok".into(),
                public_key: Vec::new(),
            },
            "tok",
        ))
        .await
        .unwrap()
        .into_inner()
        .node_id;
    assert_eq!(
        central.node_at("127.0.0.1:4242".parse().unwrap()),
        Some(id.clone())
    );

    let mut discovery = NodeDiscoveryServiceClient::connect(url.clone())
        .await
        .unwrap();
    let info = discovery
        .get_node_info(GetNodeInfoRequest {
            node_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!((info.node_id.as_str(), info.port), (id.as_str(), 4242));
    let unknown = discovery
        .get_node_info(GetNodeInfoRequest {
            node_id: "00000000-0000-4000-8000-000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert_eq!(unknown.message(), "Node not found");

    // Reports: the token first, then the job must be one the coordinator assigned.
    let mut status = JobStatusServiceClient::connect(url.clone()).await.unwrap();
    let job = "9a0c1a52-0000-4000-8000-00000000000a".to_string();
    let update = UpdateJobStatusRequest {
        node_id: id.clone(),
        job_id: job.clone(),
        status: StatusCode::StatusInProgress as i32,
        progress: 0.5,
        ..Default::default()
    };
    let refused = status.update_job_status(update.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let unknown = status
        .update_job_status(bearer(update.clone(), "tok"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    seen.lock().unwrap().known_jobs.insert(job.clone());
    status
        .update_job_status(bearer(update, "tok"))
        .await
        .unwrap();
    status
        .report_job_result(bearer(
            ReportJobResultRequest {
                node_id: id.clone(),
                job_id: job.clone(),
                final_status: StatusCode::StatusSuccess as i32,
                ..Default::default()
            },
            "tok",
        ))
        .await
        .unwrap();
    let mut reservations = JobReservationServiceClient::connect(url.clone())
        .await
        .unwrap();
    let complete = reservations
        .report_job_complete_from_node(bearer(
            ReportJobCompleteFromNodeRequest {
                reservation_id: "r1".into(),
                job_id: "r1".into(),
                node_id: id.clone(),
                success: true,
                ..Default::default()
            },
            "tok",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(complete.status, StatusCode::StatusSuccess as i32);
    reservations
        .report_reservation_end_from_node(bearer(
            ReportReservationEndFromNodeRequest {
                reservation_id: "r1".into(),
                node_id: id.clone(),
                jobs_completed: 1,
                ..Default::default()
            },
            "tok",
        ))
        .await
        .unwrap();
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.job_updates.len(), 1);
        assert_eq!(s.job_results.len(), 1);
        assert_eq!(s.unknown_job_reports, vec![job.clone()]);
        assert_eq!(s.job_completes_from_node.len(), 1);
        assert_eq!(s.reservation_ends.len(), 1);
        assert_eq!(s.node_info_queries.len(), 2);
    }

    // Forgotten: NOT_FOUND heartbeats, or SUCCESS ones as the real server answers.
    assert!(central.forget(&id));
    let beat = || HeartbeatRequest {
        node_id: id.clone(),
        ..Default::default()
    };
    let lost = nodes.heartbeat(bearer(beat(), "tok")).await.unwrap_err();
    assert_eq!(lost.code(), tonic::Code::NotFound);
    seen.lock().unwrap().lenient_heartbeats = true;
    let answer = nodes
        .heartbeat(bearer(beat(), "tok"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status, StatusCode::StatusSuccess as i32);
    assert_eq!(seen.lock().unwrap().unknown_heartbeats, 2);

    // Killed and restarted on the same address: the same "database".
    let addr = central.addr;
    central.restart().await;
    assert_eq!(central.addr, addr);
    let mut again = JobStatusServiceClient::connect(url).await.unwrap();
    again
        .report_job_result(bearer(
            ReportJobResultRequest {
                node_id: id.clone(),
                job_id: job,
                final_status: StatusCode::StatusFailed as i32,
                ..Default::default()
            },
            "tok",
        ))
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().job_results.len(), 2);
    central.kill().await;
}

/// The real server answers heartbeats with SUCCESS even after it forgot the node: only the
/// registration check (NodeDiscoveryService/GetNodeInfo, every `registration_check_seconds`)
/// notices, and the node registers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_node_registers_again_though_its_heartbeats_succeed() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut central = Coordinator::start("127.0.0.1:0".parse().unwrap(), "tok", seen.clone()).await;
    let node = Node::new();
    node.write_config(&node_config_with(
        central.addr,
        "tok",
        "registration_check_seconds = 5",
    ));
    let running = start_node(&node, free_port_pair()).await;
    central
        .wait_for(
            "registration and heartbeats",
            Duration::from_secs(20),
            |s| s.nodes.values().any(|n| n.heartbeats.len() >= 2),
        )
        .await;
    let id = seen.lock().unwrap().nodes.keys().next().unwrap().clone();
    let registrations = seen.lock().unwrap().registrations.len();

    // The server forgets the node but keeps answering its heartbeats.
    seen.lock().unwrap().lenient_heartbeats = true;
    assert!(central.forget(&id));
    central
        .wait_for(
            "a new registration after the check",
            Duration::from_secs(20),
            |s| {
                s.registrations.len() > registrations
                    && s.nodes.values().any(|n| !n.heartbeats.is_empty())
            },
        )
        .await;
    {
        let s = seen.lock().unwrap();
        assert!(
            s.node_info_queries.contains(&id),
            "the node asked whether it is still known: {:?}",
            s.node_info_queries
        );
        assert_eq!(s.refused, 0, "GetNodeInfo is asked without needing a token");
    }
    let new_id = seen.lock().unwrap().nodes.keys().next().unwrap().clone();
    assert_ne!(
        new_id, id,
        "the coordinator lost the row, so it mints a new id"
    );
    let st = wait_status(&node, "the new id", |s| s["node"]["id"] == new_id.as_str()).await;
    assert_eq!(st["central"]["state"], "connected");
    assert!(
        st["central"]["registrations"].as_u64().unwrap() >= 2,
        "{st}"
    );
    drop(running);
    central.kill().await;
}

/// Heartbeats always carry `current_status` (the server computes load from the active jobs
/// only when it is there) and, while idle, no active jobs; the uptime figure in it is the
/// node's history: an hour up, an hour down, then up since it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_the_status_idle_jobs_and_the_uptime_from_history() {
    let node = Node::new();
    // An hour of 5 s samples that ended an hour ago, as a previous run would have left them.
    tokio::task::block_in_place(|| {
        let store = cyxwiz_node::store::Store::open(&node.data_dir().join("node.db")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        for ts in (now - 7200..now - 3600).step_by(5) {
            store
                .record_metric_point(&cyxwiz_node::store::metrics::HistoryPoint {
                    ts,
                    resolution: 5,
                    cpu_percent: 3.0,
                    ram_used_bytes: 1 << 30,
                    ram_total_bytes: 4 << 30,
                    net_rx_bps: 0.0,
                    net_tx_bps: 0.0,
                    gpu_percent: None,
                    gpu_memory_used_bytes: None,
                    gpu_power_watts: None,
                })
                .unwrap();
        }
    });
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut central = Coordinator::start("127.0.0.1:0".parse().unwrap(), "tok", seen.clone()).await;
    node.write_config(&node_config(central.addr, "tok"));
    let running = start_node(&node, free_port_pair()).await;
    central
        .wait_for("3 heartbeats", Duration::from_secs(20), |s| {
            s.nodes.values().any(|n| n.heartbeats.len() >= 3)
        })
        .await;
    let record = seen.lock().unwrap().nodes.values().next().unwrap().clone();
    let registered = record.registration.info.as_ref().unwrap().uptime_percentage;
    assert!((40.0..60.0).contains(&registered), "uptime {registered}");
    for (_, beat) in &record.heartbeats {
        assert!(beat.active_jobs.is_empty(), "{:?}", beat.active_jobs);
        let status = beat
            .current_status
            .as_ref()
            .expect("current_status in every heartbeat");
        assert!(status.is_online);
        assert!(
            (40.0..60.0).contains(&status.uptime_percentage),
            "uptime {}",
            status.uptime_percentage
        );
    }
    drop(running);
    central.kill().await;
}

/// With a central server and gRPC on, the AssignJob port (registered port + 3) must be served:
/// `run` refuses to start and says what to add. Standalone nodes may serve any ports.
#[test]
fn a_central_server_without_the_assign_job_port_is_refused_at_start() {
    let node = Node::new();
    node.write_config(&node_config("127.0.0.1:9".parse().unwrap(), "tok"));
    let port = free_port_pair();
    let ports = port.to_string();
    let mut child = node
        .command()
        .args(["run", "--api-port", "0", "--grpc-ports", &ports])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A node that starts instead would run until killed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the node started without its AssignJob port: {}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    let fix = format!("add {}: ports = [{port}, {}]", port + 3, port + 3);
    assert!(
        lines[0].starts_with("error: ")
            && lines[0].contains("grpc.ports")
            && lines[0].contains(&fix)
            && lines[0].contains(&format!("--grpc-ports {port},{}", port + 3)),
        "{err}"
    );

    // Standalone, the same ports are fine.
    node.write_config("[node]\nname = \"alone\"\n");
    let running = node.start(&["--grpc-ports", &ports]);
    drop(running);
}
