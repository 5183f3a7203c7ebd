//! Network mode against a test coordinator (tests/tests/coordinator): registration with a full
//! NodeInfo, adopted and persisted UUID, heartbeat cadence, `jobs_to_cancel`, the coordinator
//! killed and restarted mid-run, the node forgotten (NOT_FOUND) and re-registering,
//! UNAUTHENTICATED stopping retries, AssignJob answered per policy on registered port + 3, and
//! GetNodeMetrics from the metrics history. The real server's quirks: a forgotten node whose
//! heartbeats still succeed is found by the registration check (GetNodeInfo) and registers
//! again; heartbeats carry the node's status and active jobs, and the uptime figure comes from
//! the metric history; a central server without the AssignJob port (+ 3) served is refused at
//! start. Over TLS: a coordinator with a certificate from a
//! private CA made by `openssl` for the test, trusted through `ca_file`, the token read from
//! `auth_token_file`; an untrusted or misnamed certificate never receives the token. Real node
//! binary, real gRPC on loopback.

mod common;
mod coordinator;

use common::{stderr, stdout, Node, Running};
use coordinator::{Coordinator, Seen};
use cyxwiz_proto::protocol::{
    node_service_client::NodeServiceClient, AssignJobRequest, DeviceType, GetNodeMetricsRequest,
    JobConfig, JobType, StatusCode,
};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A port `p` with `p + 3` free too (the node serves both).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 3)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

fn node_config(central: std::net::SocketAddr, token: &str) -> String {
    node_config_with(central, token, "")
}

/// `node_config` with more `[central_server]` keys.
fn node_config_with(central: std::net::SocketAddr, token: &str, extra: &str) -> String {
    format!(
        r#"
[node]
name = "coordinated"
wallet_address = "wallet-test-1"
region = "test-region"

[central_server]
address = "{central}"
auth_token = "{token}"
heartbeat_interval_seconds = 1
reconnect_delay_seconds = 1
{extra}

[grpc]
host = "127.0.0.1"

[metrics]
interval_seconds = 1

[pricing]
price_per_hour = 0.25
"#
    )
}

fn status(node: &Node) -> serde_json::Value {
    let out = node.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

async fn wait_status(
    node: &Node,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(node);
        if check(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn heartbeats_of(seen: &Seen, id: &str) -> usize {
    seen.nodes.get(id).map_or(0, |n| n.heartbeats.len())
}

async fn start_node(node: &Node, grpc: u16) -> Running {
    start_node_with(node, grpc, &[]).await
}

async fn start_node_with(node: &Node, grpc: u16, extra: &[&str]) -> Running {
    let ports = format!("{grpc},{}", grpc + 3);
    let mut args = vec!["--grpc-ports", &ports];
    args.extend_from_slice(extra);
    let node_ref: &Node = node;
    // Node::start blocks while it waits for the HTTP listener; the coordinator runs on the
    // runtime's other threads meanwhile.
    tokio::task::block_in_place(|| node_ref.start(&args))
}

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

/// A private CA and a server certificate it signed for `central.test` only (no IP), made with
/// `openssl` in `dir`: returns (CA certificate path, server identity).
fn private_ca(dir: &std::path::Path) -> (std::path::PathBuf, tonic::transport::Identity) {
    // Every argument is free of spaces, so each command is written as one line.
    let run = |command: &str| {
        let out = std::process::Command::new("openssl")
            .args(command.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {command}: {}", stderr(&out));
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    run(&format!(
        "req -x509 {ec} -days 1 -subj /CN=test-ca -addext basicConstraints=critical,CA:TRUE \
         -addext keyUsage=critical,keyCertSign -keyout ca.key -out ca.pem"
    ));
    run(&format!(
        "req {ec} -subj /CN=central.test -keyout server.key -out server.csr"
    ));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:central.test\nbasicConstraints=critical,CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
         -extfile server.ext -out server.pem",
    );
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(dir.join("server.pem")).unwrap(),
        std::fs::read(dir.join("server.key")).unwrap(),
    );
    (dir.join("ca.pem"), identity)
}

fn tls_config(central: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
[node]
name = "over-tls"
wallet_address = "wallet-tls-1"

[central_server]
address = "https://{central}"
heartbeat_interval_seconds = 1
reconnect_delay_seconds = 1
{extra}

[grpc]
host = "127.0.0.1"
"#
    )
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_over_tls_with_a_private_ca_and_a_token_file() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, identity) = private_ca(certs.path());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut central = Coordinator::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        "tls-token",
        seen.clone(),
        identity,
    )
    .await;
    let node = Node::new();
    // Relative paths in the config are relative to the config file.
    std::fs::copy(&ca, node.data_dir().join("ca.pem")).unwrap();
    let token = node.data_dir().join("token");
    std::fs::write(&token, "tls-token\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        // As an older node left it: the node tightens it.
        std::fs::set_permissions(node.data_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    node.write_config(&tls_config(
        central.addr,
        "ca_file = \"ca.pem\"\nauth_token_file = \"token\"\ntls_server_name = \"central.test\"",
    ));
    let running = start_node(&node, free_port_pair()).await;
    central
        .wait_for("a registration over TLS", Duration::from_secs(20), |s| {
            s.nodes.values().any(|n| n.heartbeats.len() >= 2)
        })
        .await;
    let reg = seen.lock().unwrap().registrations[0].clone();
    assert_eq!(
        reg.authentication_token, "tls-token",
        "the token file's, trimmed"
    );
    assert_eq!(seen.lock().unwrap().refused, 0);
    wait_status(&node, "connected", |s| s["central"]["state"] == "connected").await;
    assert!(
        !running
            .log
            .iter()
            .any(|l| l.contains("unencrypted") || l.contains("other users")),
        "no security warning for a TLS link and a private token file: {:?}",
        running.log
    );

    // What the node keeps on disk is private to its user.
    let data = node.data_dir();
    assert_eq!(mode(data), 0o700, "data directory");
    assert_eq!(mode(&data.join("node.db")), 0o600, "node.db");
    for companion in ["node.db-wal", "node.db-shm"] {
        if data.join(companion).exists() {
            assert_eq!(mode(&data.join(companion)), 0o600, "{companion}");
        }
    }
    assert_eq!(mode(&data.join("control.sock")), 0o600, "control socket");
    drop(running);
    central.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_or_misnamed_certificate_never_receives_the_token() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, identity) = private_ca(certs.path());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut central = Coordinator::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        "tls-token",
        seen.clone(),
        identity,
    )
    .await;
    let node = Node::new();
    // The system's roots do not include the test CA: the handshake fails, so the token given
    // on the command line (warned about) is never sent.
    node.write_config(&tls_config(
        central.addr,
        "tls_server_name = \"central.test\"",
    ));
    let running = start_node_with(&node, free_port_pair(), &["--auth-token", "tls-token"]).await;
    assert!(
        running
            .log
            .iter()
            .any(|l| l.contains("--auth-token") && l.contains("other users")),
        "{:?}",
        running.log
    );
    let st = wait_status(&node, "a refused certificate", |s| {
        s["central"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate"))
    })
    .await;
    assert_eq!(st["central"]["state"], "disconnected", "{st}");
    tokio::task::block_in_place(|| running.stop());

    // Trusting the CA but dialling 127.0.0.1 without the name override: the certificate is
    // for central.test only, so the name check fails.
    node.write_config(&tls_config(
        central.addr,
        &format!("ca_file = \"{}\"\nauth_token = \"tls-token\"", ca.display()),
    ));
    let running = start_node(&node, free_port_pair()).await;
    let st = wait_status(&node, "a misnamed certificate", |s| {
        s["central"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate") && e.contains("central.test"))
    })
    .await;
    assert_eq!(st["central"]["state"], "disconnected", "{st}");
    drop(running);
    {
        let s = seen.lock().unwrap();
        assert!(s.registrations.is_empty() && s.refused == 0, "{s:?}");
    }
    central.kill().await;
}

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
