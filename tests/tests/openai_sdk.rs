//! The OpenAI-compatible API through the official `openai` Python SDK (pinned in
//! tests/python/requirements.txt; `scripts/test` installs it into a venv), against a real
//! node serving SmolLM2 (llama.cpp), MiniLM (embedding pipeline over ONNX Runtime) and the
//! rapidocr classifier, with API keys required.

mod common;

use common::{models_dir, serving_config, stderr, stdout, venv_python, wait_ready, Node};
use std::process::Command;

fn create_key(node: &Node, args: &[&str]) -> String {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    let out = node.cli(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

#[test]
fn the_openai_python_sdk_passes_against_the_node() {
    let python = venv_python();
    let node = Node::new();
    node.write_config(&serving_config(true));
    let full = create_key(&node, &["--name", "full"]);
    let limited = create_key(&node, &["--name", "limited", "--rpm", "3"]);
    let embed_only = create_key(&node, &["--name", "embed-only", "--models", "embed"]);
    let running = node.start(&[]);
    wait_ready(&running);

    common::pytest(
        "tests/python",
        &[
            ("CYXWIZ_BASE_URL", &format!("http://{}/v1", running.addr)),
            ("CYXWIZ_API_KEY", &full),
            ("CYXWIZ_LIMITED_KEY", &limited),
            ("CYXWIZ_EMBED_ONLY_KEY", &embed_only),
            ("CYXWIZ_MODELS_DIR", &models_dir()),
        ],
    );

    // A bounded schemathesis run against /openapi.json finds no 5xx answer.
    let schemathesis = python.with_file_name("schemathesis");
    let out = Command::new(&schemathesis)
        .args(["run", &format!("http://{}/openapi.json", running.addr)])
        .args(["--checks", "not_a_server_error", "--max-examples", "25"])
        .args(["--phases", "coverage,fuzzing", "--seed", "1", "--no-color"])
        .args(["--header", &format!("Authorization: Bearer {full}")])
        .current_dir(node.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );

    // The metrics the run produced pass promtool's checks.
    let (status, metrics) = running.get("/metrics");
    assert_eq!(status, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/install-deps installs the `prometheus` package)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool: {}{}\n{metrics}",
        stdout(&checked),
        stderr(&checked)
    );

    // Key use is recorded, and auth failures are audited.
    let list = node.cli(&["keys", "list", "--json"]);
    let keys: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let full_row = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "full")
        .unwrap();
    assert!(
        full_row["request_count"].as_u64().unwrap() > 10,
        "{full_row}"
    );
    assert!(running.stop().success());
}
