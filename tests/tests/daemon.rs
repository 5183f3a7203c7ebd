//! `cyxwiz-node run`: configured deployments load in the background, `/health` reports them,
//! a broken deployment does not take the node down, and SIGTERM stops it cleanly.

mod common;

use common::{classifier, models_dir, Node};
use std::time::{Duration, Instant};

#[test]
fn run_serves_health_for_configured_models_and_stops_on_sigterm() {
    let node = Node::new();
    node.write_config(&format!(
        r#"
[node]
name = "e2e-node"

[[deployments]]
name = "orientation"
path = "{cls}"
options = {{ input_shapes = {{ x = [-1, 3, 48, 192] }} }}

[[deployments]]
name = "squeezenet"
path = "{squeeze}"
plugin = "onnx-tract"

[[deployments]]
name = "missing"
path = "does/not/exist.onnx"

[[deployments]]
name = "panicky"
path = "model.panicky"
"#,
        cls = classifier().display(),
        squeeze = models_dir()
            .join("onnx-light/light_squeezenet.onnx")
            .display(),
    ));
    std::fs::write(node.data_dir().join("model.panicky"), "panicky").unwrap();
    let mut running = node.start(&[]);

    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        let (status, body) = running.get_json("/health");
        match status {
            503 => {
                assert_eq!(body["status"], "loading");
                assert_eq!(body["reason"], "models are loading");
            }
            200 => break body,
            other => panic!("unexpected /health status {other}: {body}"),
        }
        assert!(
            Instant::now() < deadline,
            "models never finished loading: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["node"]["name"], "e2e-node");
    assert!(health["plugins"]["loaded"].as_u64().unwrap() >= 1);
    let model = |name: &str| {
        health["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing: {health}"))
    };
    assert_eq!(model("orientation")["status"], "ready");
    assert_eq!(model("orientation")["plugin"], "onnx-tract");
    assert_eq!(model("squeezenet")["status"], "ready");
    assert_eq!(model("panicky")["plugin"], "test-panic");
    let missing = model("missing");
    assert_eq!(missing["status"], "failed");
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .contains("no such file"),
        "{missing}"
    );

    let (status, body) = running.get_json("/no/such/route");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(
        body["error"]["message"],
        "Unknown request URL: GET /no/such/route"
    );

    let id_before = health["node"]["id"].as_str().unwrap().to_string();
    let log = running.drain_log();
    assert!(log.iter().any(|l| l.contains("model ready")));
    // A plugin's own `tracing` events reach the node's log, tagged with the plugin's name.
    assert!(
        log.iter()
            .any(|l| l.contains("panicky model loaded") && l.contains("test-panic")),
        "{}",
        log.join("\n")
    );
    let status = running.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");

    // The node id persists in the data directory's database across restarts.
    node.write_config("[node]\nname = \"e2e-node\"\n");
    let running = node.start(&[]);
    let (status, body) = running.get_json("/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["node"]["id"], id_before.as_str());
    assert!(node.data_dir().join("node.db").is_file());
    for dir in ["models", "plugins", "jobs", "logs"] {
        assert!(node.data_dir().join(dir).is_dir(), "{dir}/ created");
    }
}

#[test]
fn a_port_in_use_is_a_one_line_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let node = Node::new();
    let out = node.cli(&["run", "--api-port", &port]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: HTTP API on 127.0.0.1:") && last.contains("in use"),
        "{err}"
    );
}
