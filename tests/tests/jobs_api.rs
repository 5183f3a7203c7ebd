//! The training-job interfaces end to end, for what needs no trained job: the CLI's one-line
//! refusals (a bad graph names its node; unknown and malformed ids), an empty list, and
//! `/v1/jobs` over HTTP: keys with the `jobs` scope, 400s naming the problem, 404s, the
//! OpenAPI document and the job gauges on `/metrics`. (Training itself: `training.rs`.)

mod common;

use common::{stderr, stdout, Node};
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

const UNKNOWN: &str = "3f2b1a4e-0000-4000-8000-000000000000";

/// A GET with an optional bearer key; status and body.
fn get(addr: &str, path: &str, key: Option<&str>) -> (u16, String) {
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn base64_matches_the_standard_alphabet() {
    assert_eq!(base64(b"x0,label\n"), "eDAsbGFiZWwK");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"a"), "YQ==");
}

/// An Engine graph whose Dense (node 3) has a `units` that is not a number.
const BAD_GRAPH: &str = r#"{"nodes": [
  {"id": 1, "type": 77, "name": "Dataset Input", "parameters": {}},
  {"id": 2, "type": 15, "name": "Flatten", "parameters": {}},
  {"id": 3, "type": 0, "name": "Dense", "parameters": {"units": "many"}},
  {"id": 4, "type": 52, "name": "CrossEntropyLoss", "parameters": {}}],
 "links": [
  {"from_node": 1, "from_pin_index": 0, "to_node": 2, "to_pin_index": 0},
  {"from_node": 2, "from_pin_index": 0, "to_node": 3, "to_pin_index": 0},
  {"from_node": 3, "from_pin_index": 0, "to_node": 4, "to_pin_index": 0},
  {"from_node": 1, "from_pin_index": 1, "to_node": 4, "to_pin_index": 1}]}"#;

/// A small CSV (two features, two classes) from a fixed-seed generator.
fn synthetic_csv() -> String {
    let mut state: u64 = 42;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut text = String::from("x0,x1,label\n");
    for i in 0..64 {
        text.push_str(&format!("{:.4},{:.4},{}\n", next(), next(), i % 2));
    }
    text
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn cli_refusals_are_one_line_and_the_node_stays_up() {
    let node = Node::new();
    node.write_config("[node]\nname = \"jobs-cli\"\n");
    let running = node.start(&[]);

    let out = node.cli(&["jobs", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "[]");
    assert_eq!(stdout(&node.cli(&["jobs", "list"])).trim(), "no jobs");

    let graph = node.data_dir().join("bad.json");
    std::fs::write(&graph, BAD_GRAPH).unwrap();
    let data = node.data_dir().join("data.csv");
    std::fs::write(&data, synthetic_csv()).unwrap();
    let inline = format!("@{}", data.display());
    let out = node.cli(&[
        "jobs",
        "submit",
        "--graph",
        graph.to_str().unwrap(),
        "--dataset",
        &inline,
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with("error (invalid input): graph: node 3") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(err.contains("units"), "{err}");
    assert_eq!(stdout(&out), "", "nothing on stdout when refused");

    // Unknown and malformed ids, for every command that takes one.
    for command in ["show", "logs", "cancel", "pause", "resume"] {
        let out = node.cli(&["jobs", command, UNKNOWN]);
        assert!(!out.status.success(), "{command}");
        let err = stderr(&out);
        assert_eq!(
            err.trim(),
            format!("error (not found): no job {UNKNOWN}"),
            "{command}"
        );
        let out = node.cli(&["jobs", command, "job-1"]);
        let err = stderr(&out);
        assert_eq!(
            err.trim(),
            "error (invalid input): job id \\\"job-1\\\" is not a UUID",
            "{command}"
        );
    }
    let target = node.data_dir().join("w.safetensors");
    let out = node.cli(&[
        "jobs",
        "weights",
        UNKNOWN,
        "--out",
        target.to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).starts_with("error (not found)"),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists());
    let out = node.cli(&["jobs", "list", "--state", "finished"]);
    assert!(
        stderr(&out).starts_with("error (invalid input): state must be one of queued,"),
        "{}",
        stderr(&out)
    );

    // Still serving, nothing queued.
    assert_eq!(running.get("/health").0, 200);
    assert_eq!(stdout(&node.cli(&["jobs", "list", "--json"])).trim(), "[]");
    running.stop();
}

#[test]
fn http_jobs_need_the_jobs_scope_and_answer_openai_errors() {
    let node = Node::new();
    node.write_config("[api]\nrequire_auth = true\n");
    let running = node.start(&[]);
    let addr = running.addr.clone();
    let key = |name: &str, scopes: &str| {
        let out = node.cli(&["keys", "create", "--name", name, "--scopes", scopes]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let jobs_key = key("trainer", "jobs");
    let inference_key = key("chat", "inference");
    let admin_key = key("ops", "admin");

    // No key, a key without the scope, then keys with it.
    let (status, body) = get(&addr, "/v1/jobs", None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(json(&body)["error"]["type"], "invalid_request_error");
    let (status, body) = get(&addr, "/v1/jobs", Some(&inference_key));
    assert_eq!(status, 403, "{body}");
    for key in [&jobs_key, &admin_key] {
        let (status, body) = get(&addr, "/v1/jobs", Some(key));
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body), serde_json::json!([]));
    }
    let (status, _, body) = common::post_full(&addr, "/v1/jobs", None, "{}");
    assert_eq!(status, 401, "{body}");

    // Unknown and malformed ids.
    let k = Some(jobs_key.as_str());
    for path in [
        format!("/v1/jobs/{UNKNOWN}"),
        format!("/v1/jobs/{UNKNOWN}/events"),
        format!("/v1/jobs/{UNKNOWN}/weights"),
    ] {
        let (status, body) = get(&addr, &path, k);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            json(&body)["error"]["message"]
                .as_str()
                .unwrap()
                .contains(UNKNOWN),
            "{body}"
        );
        let bad = path.replace(UNKNOWN, "not-a-uuid");
        let (status, body) = get(&addr, &bad, k);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    for action in ["cancel", "pause", "resume"] {
        let path = format!("/v1/jobs/{UNKNOWN}/{action}");
        let (status, _, body) = common::post_full(&addr, &path, k, "");
        assert_eq!(status, 404, "{path}: {body}");
    }

    // Malformed bodies: 400 with the problem named.
    let (status, _, body) = common::post_full(&addr, "/v1/jobs", k, r#"{"graph": {"layers": ["#);
    assert_eq!(status, 400, "{body}");
    let message = json(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("not valid JSON"), "{message}");
    let (status, _, body) =
        common::post_full(&addr, "/v1/jobs", k, r#"{"graph": {}, "epochs": -1}"#);
    assert_eq!(status, 400, "{body}");
    assert_eq!(json(&body)["error"]["param"], "epochs", "{body}");
    let (status, _, body) = common::post_full(
        &addr,
        "/v1/jobs",
        k,
        r#"{"graph": {}, "optimiser": "adam"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(json(&body)["error"]["param"], "optimiser", "{body}");
    let b64 = base64(synthetic_csv().as_bytes());
    let request = format!(r#"{{"graph": {BAD_GRAPH}, "dataset_base64": "{b64}"}}"#);
    let (status, _, body) = common::post_full(&addr, "/v1/jobs", k, &request);
    assert_eq!(status, 400, "{body}");
    let error = &json(&body)["error"];
    assert_eq!(error["param"], "graph", "{body}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("graph: node 3"),
        "{body}"
    );
    let (status, body) = get(&addr, "/v1/jobs?state=done", k);
    assert_eq!(status, 400, "{body}");
    assert_eq!(json(&body)["error"]["param"], "state");

    // Documented, and counted on /metrics (no job yet: zeros).
    let (status, body) = running.get("/openapi.json");
    assert_eq!(status, 200);
    let doc = json(&body);
    for path in ["/v1/jobs", "/v1/jobs/{id}/events", "/v1/jobs/{id}/weights"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    let (_, metrics) = running.get("/metrics");
    for line in [
        "cyxwiz_node_jobs{state=\"queued\"} 0",
        "cyxwiz_node_jobs{state=\"succeeded\"} 0",
        "cyxwiz_node_training_samples_per_second 0.0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing");
    }
    running.stop();
}
