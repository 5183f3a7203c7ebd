//! Helpers shared by the central-server e2e tests (central.rs, central_tls.rs,
//! central_checks.rs, network_jobs.rs, p2p_central.rs): the node's config for a test
//! coordinator, a free gRPC port pair (p and p + 3), `status --json` and waiting on it,
//! heartbeat counts, and starting the node.

#![allow(dead_code)]

use crate::common::{stderr, stdout, Node, Running};
use crate::coordinator::Seen;
use std::time::{Duration, Instant};

/// A port `p` with `p + 3` free too (the node serves both).
pub fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 3)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

pub fn node_config(central: std::net::SocketAddr, token: &str) -> String {
    node_config_with(central, token, "")
}

/// `node_config` with more `[central_server]` keys.
pub fn node_config_with(central: std::net::SocketAddr, token: &str, extra: &str) -> String {
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

pub fn status(node: &Node) -> serde_json::Value {
    let out = node.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

pub async fn wait_status(
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

pub fn heartbeats_of(seen: &Seen, id: &str) -> usize {
    seen.nodes.get(id).map_or(0, |n| n.heartbeats.len())
}

pub async fn start_node(node: &Node, grpc: u16) -> Running {
    start_node_with(node, grpc, &[]).await
}

pub async fn start_node_with(node: &Node, grpc: u16, extra: &[&str]) -> Running {
    let ports = format!("{grpc},{}", grpc + 3);
    let mut args = vec!["--grpc-ports", &ports];
    args.extend_from_slice(extra);
    let node_ref: &Node = node;
    // Node::start blocks while it waits for the HTTP listener; the coordinator runs on the
    // runtime's other threads meanwhile.
    tokio::task::block_in_place(|| node_ref.start(&args))
}
