//! The OpenAI-compatible API through the official `openai` Python SDK (pinned in
//! tests/python/requirements.txt; `scripts/test` installs it into a venv), against a real
//! node serving SmolLM2 (llama.cpp), MiniLM (embedding pipeline over ONNX Runtime) and the
//! rapidocr classifier, with API keys required.

mod common;

use common::{classifier, models_dir, stderr, stdout, venv_python, Node};
use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

/// A config serving chat, embeddings and a tensor model.
pub fn serving_config(require_auth: bool) -> String {
    let models = models_dir();
    format!(
        r#"
[api]
require_auth = {require_auth}

{ort}
[[deployments]]
name = "chat"
aliases = ["smollm2"]
path = "{gguf}"
threads = 2
options = {{ slots = 4, context_length = 2048 }}

[[deployments]]
name = "embed"
path = "{minilm}"

[[deployments]]
name = "classifier"
path = "{cls}"
plugin = "onnx-tract"
options = {{ input_shapes = {{ x = [-1, 3, 48, 192] }} }}
"#,
        ort = common::prefer_onnx_runtime(),
        gguf = models
            .join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
            .display(),
        minilm = models.join("minilm").display(),
        cls = classifier().display(),
    )
}

/// Waits until `/health` says every model is ready.
pub fn wait_ready(running: &common::Running) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = running.get_json("/health");
        if status == 200 {
            assert_eq!(body["status"], "ok", "a model failed to load: {body}");
            return;
        }
        assert!(Instant::now() < deadline, "models never loaded: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

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
    let venv_bin = python.clone();
    let node = Node::new();
    node.write_config(&serving_config(true));
    let full = create_key(&node, &["--name", "full"]);
    let limited = create_key(&node, &["--name", "limited", "--rpm", "3"]);
    let embed_only = create_key(&node, &["--name", "embed-only", "--models", "embed"]);
    let running = node.start(&[]);
    wait_ready(&running);

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/python",
        ])
        .current_dir(&root)
        .env("CYXWIZ_BASE_URL", format!("http://{}/v1", running.addr))
        .env("CYXWIZ_API_KEY", &full)
        .env("CYXWIZ_LIMITED_KEY", &limited)
        .env("CYXWIZ_EMBED_ONLY_KEY", &embed_only)
        .env("CYXWIZ_MODELS_DIR", models_dir())
        .output()
        .unwrap();
    println!("{}", stdout(&out));
    assert!(
        out.status.success(),
        "pytest failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );

    // A bounded schemathesis run against /openapi.json finds no 5xx answer.
    let schemathesis = venv_bin.with_file_name("schemathesis");
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
