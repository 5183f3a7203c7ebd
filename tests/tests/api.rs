//! The HTTP API and the operator commands around it, on the real binary: revoking a key
//! takes effect on the running node, models are deployed and undeployed at run time through
//! the control socket, and the audit log records it all (a client that drops a stream frees
//! its slot: see `generation.rs`).

mod common;

use common::{models_dir, post_full, stderr, stdout, Node, Running};
use cyxwiz_node::store::Store;
use std::time::{Duration, Instant};

/// POSTs JSON with an optional bearer key; returns status and body.
fn post(running: &Running, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let (status, _, body) = post_full(&running.addr, path, key, body);
    (status, body)
}

#[test]
fn keys_deployments_and_cancellation_on_a_running_node() {
    let node = Node::new();
    let models = models_dir();
    let gguf = models.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    node.write_config(&format!(
        r#"
[api]
require_auth = true

[devices]
max_ram_mb = 320

{ort}
[[deployments]]
name = "chat"
path = "{gguf}"
threads = 2
workers = 1
queue_size = 4
max_concurrent_requests = 2
options = {{ slots = 2, context_length = 4096 }}
"#,
        gguf = gguf.display(),
        ort = common::prefer_onnx_runtime(),
    ));
    let out = node.cli(&["keys", "create", "--name", "ops"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    let running = node.start(&[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while running.get("/health").0 != 200 {
        assert!(Instant::now() < deadline, "chat never loaded");
        std::thread::sleep(Duration::from_millis(200));
    }

    // No key: 401; the key: 200.
    let body = r#"{"model":"chat","messages":[{"role":"user","content":"Hi"}],"max_tokens":4}"#;
    let (status, text) = post(&running, "/v1/chat/completions", None, body);
    assert_eq!(status, 401, "{text}");
    let (status, text) = post(&running, "/v1/chat/completions", Some(&key), body);
    assert_eq!(status, 200, "{text}");

    // Two requests admitted at once: concurrent requests beyond them get 429 at once.
    let answers: Vec<(u16, String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (addr, key) = (&running.addr, &key);
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(30 * i));
                    let body = r#"{"model":"chat","temperature":0,"max_tokens":200,"messages":[{"role":"user","content":"Write a long poem."}]}"#;
                    post_full(addr, "/v1/chat/completions", Some(key), body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refused: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert!(
        !refused.is_empty() && answers.iter().any(|a| a.0 == 200),
        "{answers:?}"
    );
    for (_, head, body) in refused {
        assert!(body.contains("\"code\":\"overloaded\""), "{body}");
        assert!(
            body.contains("at its limit of 2 concurrent requests"),
            "{body}"
        );
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 1"),
            "{head}"
        );
    }

    // Run-time deploy through the control socket, served at once; undeploy stops it.
    let minilm = models.join("minilm");
    let out = node.cli(&[
        "deploy",
        minilm.to_str().unwrap(),
        "--name",
        "embed",
        "--alias",
        "text-embedding-3-small",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("deployed `embed` (embedding"),
        "{}",
        stdout(&out)
    );
    let emb = r#"{"model":"text-embedding-3-small","input":"hello"}"#;
    let (status, text) = post(&running, "/v1/embeddings", Some(&key), emb);
    assert_eq!(status, 200, "{text}");
    let list = node.cli(&["deployments", "list"]);
    let listing = stdout(&list);
    assert!(
        listing.contains("embed") && listing.contains("ready"),
        "{listing}"
    );
    // The RAM budget refuses a model that would not fit, naming the numbers.
    let over = node.cli(&["deploy", gguf.to_str().unwrap(), "--name", "chat2"]);
    assert!(!over.status.success());
    let err = stderr(&over);
    assert!(
        err.starts_with("error (out of memory): loading `chat2` needs about")
            && err.contains("max_ram_mb"),
        "{err}"
    );
    let dup = node.cli(&["deploy", minilm.to_str().unwrap(), "--name", "embed"]);
    assert!(!dup.status.success());
    assert_eq!(
        stderr(&dup).trim(),
        "error (already exists): a deployment named `embed` already exists"
    );
    let bad = node.cli(&[
        "deploy",
        node.data_dir().to_str().unwrap(),
        "--name",
        "junk",
    ]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("holds no model file"),
        "{}",
        stderr(&bad)
    );
    let out = node.cli(&["undeploy", "embed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, text) = post(&running, "/v1/embeddings", Some(&key), emb);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("stopped"), "{text}");

    // Revoking the key takes effect on the running node at once.
    let out = node.cli(&["keys", "revoke", "ops"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, text) = post(&running, "/v1/chat/completions", Some(&key), body);
    assert_eq!(status, 401, "{text}");

    assert!(running.stop().success());
    // Without a daemon the control commands fail in one line.
    let out = node.cli(&["deployments", "list"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with("error: cannot reach the running node") && err.lines().count() == 1,
        "{err}"
    );

    let store = Store::open(&node.data_dir().join("node.db")).unwrap();
    let kinds: Vec<String> = store
        .recent_audit(100)
        .unwrap()
        .into_iter()
        .map(|e| e.1)
        .collect();
    for kind in [
        "key_created",
        "key_revoked",
        "auth_failed",
        "deployment_created",
        "deployment_stopped",
        "deployment_failed",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} not in {kinds:?}");
    }
}
