//! Network mode against a test coordinator (tests/tests/coordinator): registration with a full
//! NodeInfo, adopted and persisted UUID, heartbeat cadence, `jobs_to_cancel`, the coordinator
//! killed and restarted mid-run, the node forgotten (NOT_FOUND) and re-registering,
//! UNAUTHENTICATED stopping retries, AssignJob answered per policy on registered port + 3, and
//! GetNodeMetrics from the metrics history; `status` standalone. TLS is in central_tls.rs, the
//! registration check, uptime, port + 3 and the coordinator's self-test in central_checks.rs.
//! Real node binary, real gRPC on loopback.

mod central_common;
mod common;
mod coordinator;

use central_common::{free_port_pair, heartbeats_of, node_config, start_node, wait_status};
use common::{stderr, stdout, Node};
use coordinator::{Coordinator, Seen};
use cyxwiz_proto::protocol::{
    node_service_client::NodeServiceClient, AssignJobRequest, DeviceType, GetNodeMetricsRequest,
    JobConfig, JobType, StatusCode,
};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_heartbeats_and_recovers_from_a_coordinator_restart() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut central = Coordinator::start("127.0.0.1:0".parse().unwrap(), "tok", seen.clone()).await;
    let node = Node::new();
    node.write_config(&node_config(central.addr, "tok"));
    let grpc = free_port_pair();
    let mut running = start_node(&node, grpc).await;
    let local_id = tokio::task::block_in_place(|| {
        cyxwiz_node::store::Store::open(&node.data_dir().join("node.db"))
            .unwrap()
            .node_id()
            .unwrap()
    });

    // Registration: every field the central server uses.
    central
        .wait_for("a registration", Duration::from_secs(20), |s| {
            !s.registrations.is_empty()
        })
        .await;
    let (id, reg) = {
        let s = seen.lock().unwrap();
        let node = s.nodes.values().next().unwrap().clone();
        (node.id, node.registration)
    };
    assert_ne!(id, local_id, "the coordinator mints its own id");
    assert_eq!(reg.authentication_token, "tok");
    let info = reg.info.unwrap();
    assert_eq!(info.name, "coordinated");
    assert_eq!(info.wallet_address, "wallet-test-1");
    assert_eq!(info.region, "test-region");
    assert_eq!(info.ip_address, "127.0.0.1");
    assert_eq!(info.port, i32::from(grpc));
    assert!(info.cpu_cores > 0 && info.ram_total > 0 && info.ram_available > 0);
    assert!(info.ram_available <= info.ram_total);
    assert_eq!(info.devices[0].device_type, DeviceType::DeviceCpu as i32);
    assert!(!info.devices[0].device_name.is_empty());
    let version = info.version.unwrap();
    assert_eq!(
        version.build,
        format!(
            "cyxwiz-node-rs {}.{}.{}",
            version.major, version.minor, version.patch
        )
    );
    assert!(
        info.supported_formats.iter().any(|f| f == "onnx"),
        "{:?}",
        info.supported_formats
    );
    assert!(
        info.available_runtimes
            .iter()
            .any(|r| r.starts_with("onnx-tract ")),
        "{:?}",
        info.available_runtimes
    );
    assert!(info.max_model_size > 0);
    assert_eq!(info.pricing.unwrap().price_per_hour, 0.25);
    let has_gpu = info
        .devices
        .iter()
        .any(|d| d.device_type == DeviceType::DeviceCuda as i32);

    // Heartbeats every second with the adopted UUID, which `status` shows and the store keeps.
    central
        .wait_for("3 heartbeats", Duration::from_secs(15), |s| {
            heartbeats_of(s, &id) >= 3
        })
        .await;
    {
        let s = seen.lock().unwrap();
        let beats = &s.nodes[&id].heartbeats;
        for pair in beats.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(
                gap > Duration::from_millis(500) && gap < Duration::from_millis(2500),
                "heartbeat gap {gap:?}"
            );
        }
        assert!(beats
            .iter()
            .all(|(_, h)| h.node_id == id && h.current_status.is_some()));
    }
    let st = wait_status(&node, "connected", |s| s["central"]["state"] == "connected").await;
    assert_eq!(st["node"]["id"], id.as_str());
    assert!(st["central"]["last_heartbeat"].as_u64().is_some());
    let text = stdout(&node.cli(&["status"]));
    assert!(text.contains(&id) && text.contains("connected"), "{text}");

    // AssignJob on registered port + 3, answered per policy within a second.
    let mut client = NodeServiceClient::connect(format!("http://127.0.0.1:{}", grpc + 3))
        .await
        .unwrap();
    let job = |kind: JobType, device: DeviceType| JobConfig {
        job_id: "7d0c1a52-0000-4000-8000-000000000001".into(),
        job_type: kind as i32,
        required_device: device as i32,
        estimated_memory: 1 << 30,
        batch_size: 32,
        epochs: 10,
        ..Default::default()
    };
    let started = Instant::now();
    let answer = client
        .assign_job(AssignJobRequest {
            node_id: id.clone(),
            job: Some(job(JobType::Training, DeviceType::DeviceCpu)),
            authorization_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!answer.accepted);
    assert_eq!(answer.status, StatusCode::StatusError as i32);
    assert_eq!(answer.job_id, "7d0c1a52-0000-4000-8000-000000000001");
    // It passes the policy but carries no model: declined with the reason, before any run.
    let reason = answer.error.unwrap().message;
    assert!(reason.contains("model_definition"), "{reason}");
    let other = client
        .assign_job(AssignJobRequest {
            node_id: "00000000-0000-4000-8000-000000000000".into(),
            job: Some(job(JobType::Training, DeviceType::DeviceCpu)),
            authorization_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(other.error.unwrap().message.contains("addressed to node"));
    if !has_gpu {
        let cuda = client
            .assign_job(AssignJobRequest {
                node_id: id.clone(),
                job: Some(job(JobType::Training, DeviceType::DeviceCuda)),
                authorization_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(cuda.error.unwrap().message.contains("requires a CUDA GPU"));
    }
    let missing = client
        .assign_job(AssignJobRequest::default())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);

    // jobs_to_cancel reaches the node.
    seen.lock()
        .unwrap()
        .to_cancel
        .push("job-to-cancel-42".into());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running
        .drain_log()
        .iter()
        .any(|l| l.contains("job-to-cancel-42"))
    {
        assert!(
            Instant::now() < deadline,
            "the cancel request never reached the node"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The coordinator dies: local work goes on, the node reports the lost link and retries.
    central.kill().await;
    let st = wait_status(&node, "disconnected", |s| {
        s["central"]["state"] == "disconnected"
    })
    .await;
    assert!(
        st["central"]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{st}"
    );
    let (code, _) = tokio::task::block_in_place(|| running.get("/health"));
    assert_eq!(
        code, 200,
        "the HTTP API keeps serving without the central server"
    );

    // It comes back with its database: the node registers again (matched by wallet, same id)
    // and heartbeats resume.
    let before = heartbeats_of(&seen.lock().unwrap(), &id);
    let registrations = seen.lock().unwrap().registrations.len();
    central = Coordinator::start(central.addr, "tok", seen.clone()).await;
    central
        .wait_for(
            "re-registration and heartbeats",
            Duration::from_secs(30),
            |s| s.registrations.len() > registrations && heartbeats_of(s, &id) >= before + 2,
        )
        .await;
    wait_status(&node, "connected again", |s| {
        s["central"]["state"] == "connected" && s["node"]["id"] == id.as_str()
    })
    .await;

    // It forgets the node: heartbeats get NOT_FOUND, the node registers again and adopts the
    // new id at once.
    seen.lock().unwrap().nodes.clear();
    central
        .wait_for("a new node record", Duration::from_secs(20), |s| {
            s.unknown_heartbeats > 0 && s.nodes.values().any(|n| n.heartbeats.len() >= 2)
        })
        .await;
    let new_id = seen.lock().unwrap().nodes.keys().next().unwrap().clone();
    assert_ne!(new_id, id);
    wait_status(&node, "the new id", |s| s["node"]["id"] == new_id.as_str()).await;

    // GetNodeMetrics answers from the sampled history (one sample a second).
    let metrics = client
        .get_node_metrics(GetNodeMetricsRequest {
            node_id: new_id.clone(),
            start_time: 0,
            end_time: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!metrics.metrics.is_empty(), "no history points");
    assert!(metrics
        .metrics
        .iter()
        .all(|p| (0.0..=100.0).contains(&p.cpu_usage) && p.memory_usage > 0.0 && p.timestamp > 0));
    let wrong = client
        .get_node_metrics(GetNodeMetricsRequest {
            node_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::NotFound);

    tokio::task::block_in_place(|| running.stop());
    let stored = cyxwiz_node::store::Store::open(&node.data_dir().join("node.db"))
        .unwrap()
        .node_id()
        .unwrap();
    assert_eq!(stored, new_id, "the adopted id is persisted");
    central.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_retries_and_says_why() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut central =
        Coordinator::start("127.0.0.1:0".parse().unwrap(), "right", seen.clone()).await;
    let node = Node::new();
    node.write_config(&node_config(central.addr, "wrong"));
    let running = start_node(&node, free_port_pair()).await;
    let st = wait_status(&node, "unauthenticated", |s| {
        s["central"]["state"] == "unauthenticated"
    })
    .await;
    let error = st["central"]["last_error"].as_str().unwrap().to_string();
    assert!(
        error.contains("UNAUTHENTICATED") && error.contains("CYXWIZ_AUTH_TOKEN"),
        "{error}"
    );
    let refused = seen.lock().unwrap().refused;
    assert_eq!(refused, 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        seen.lock().unwrap().refused,
        refused,
        "no retries after UNAUTHENTICATED"
    );
    assert!(seen.lock().unwrap().registrations.is_empty());
    let (code, _) = tokio::task::block_in_place(|| running.get("/health"));
    assert_eq!(code, 200);
    let text = stdout(&node.cli(&["status"]));
    assert!(
        text.contains("unauthenticated") && text.contains("last error:"),
        "{text}"
    );
    drop(running);
    central.kill().await;
}

#[test]
fn standalone_status_and_no_daemon() {
    let node = Node::new();
    let out = node.cli(&["status"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1,
        "{err}"
    );
    let running = node.start(&[]);
    let text = stdout(&node.cli(&["status"]));
    assert!(text.contains("standalone"), "{text}");
    assert!(text.contains("gRPC ports:      off"), "{text}");
    drop(running);
}
