//! The node's gRPC DeploymentService and InferenceService from a second language: Python
//! `grpcio` stubs generated from our proto/ files (tests/grpc_python) create a deployment over
//! gRPC, run Infer, and call the same model over HTTP; a model deployed by config answers over
//! gRPC. Then the gRPC TLS option with a self-signed certificate, and the hardening attacks
//! (tests/grpc_python/test_attacks.py) against a node that requires keys.

mod common;

use common::{classifier, free_port, models_dir, stderr, stdout, Node};
use std::{path::PathBuf, process::Command};

fn config() -> String {
    format!(
        r#"
[models]
dirs = ["{models}"]

[grpc]
host = "127.0.0.1"

[[deployments]]
name = "classifier"
path = "{cls}"
plugin = "onnx-tract"
options = {{ input_shapes = {{ x = [-1, 3, 48, 192] }} }}
"#,
        models = models_dir().display(),
        cls = classifier().display(),
    )
}

#[test]
fn python_grpcio_client_deploys_infers_and_meets_the_http_api() {
    let node = Node::new();
    node.write_config(&config());
    let outside = node.data_dir().join("elsewhere/cls.onnx");
    std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
    std::fs::copy(classifier(), &outside).unwrap();
    let port = free_port();
    let running = node.start(&["--grpc-ports", &port.to_string()]);
    common::wait_ready(&running);

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    common::pytest(
        "tests/grpc_python/test_grpc_client.py",
        &[
            ("CYXWIZ_GRPC_ADDR", &format!("127.0.0.1:{port}")),
            ("CYXWIZ_HTTP_BASE", &format!("http://{}", running.addr)),
            ("CYXWIZ_CLASSIFIER", &classifier()),
            ("CYXWIZ_OUTSIDE_MODEL", &outside),
            ("CYXWIZ_PROTO_DIR", &root.join("proto/proto")),
        ],
    );

    // What gRPC did is visible to the operator's CLI and in the audit trail.
    let list = stdout(&node.cli(&["deployments", "list", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"cls-grpc") && !names.contains(&"short-lived"),
        "{names:?}"
    );
    drop(running);
    let store = cyxwiz_node::store::Store::open(&node.data_dir().join("node.db")).unwrap();
    let kinds: Vec<String> = store
        .recent_audit(100)
        .unwrap()
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert!(kinds.iter().any(|k| k == "deployment_deleted"), "{kinds:?}");
}

/// A shared library whose constructor writes `marker`: proof, if the file appears, that the
/// node `dlopen`ed a library a caller named.
fn evil_library(dir: &std::path::Path, marker: &std::path::Path) -> PathBuf {
    let source = dir.join("evil.c");
    std::fs::write(
        &source,
        format!(
            "#include <stdio.h>\n__attribute__((constructor)) static void owned(void) {{\n  FILE *f = fopen(\"{}\", \"w\"); if (f) {{ fputs(\"owned\", f); fclose(f); }}\n}}\n",
            marker.display()
        ),
    )
    .unwrap();
    let library = dir.join("libevil.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .unwrap();
    assert!(out.status.success(), "cc: {}", stderr(&out));
    library
}

#[test]
fn an_exposed_node_refuses_the_hardening_attacks() {
    let node = Node::new();
    node.write_config(&format!(
        "{}\n[api]\nrequire_auth = true\n",
        config().replace(
            "[grpc]\nhost = \"127.0.0.1\"\n",
            "[grpc]\nhost = \"127.0.0.1\"\nrequire_auth = true\nassign_job_per_minute = 20\n"
        )
    ));
    let create = |args: &[&str]| {
        let out = node.cli(&[&["keys", "create"], args].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let inference = create(&["--name", "app"]);
    let deploy = create(&["--name", "ops", "--scopes", "inference,deploy"]);
    let marker = node.data_dir().join("owned.txt");
    let evil = evil_library(node.data_dir(), &marker);
    let port = free_port();
    let mut running = node.start(&["--grpc-ports", &port.to_string()]);
    common::wait_ready(&running);

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    common::pytest(
        "tests/grpc_python/test_attacks.py",
        &[
            ("CYXWIZ_GRPC_ADDR", &format!("127.0.0.1:{port}")),
            ("CYXWIZ_HTTP_BASE", &format!("http://{}", running.addr)),
            ("CYXWIZ_CLASSIFIER", &classifier()),
            ("CYXWIZ_PROTO_DIR", &root.join("proto/proto")),
            ("CYXWIZ_INFERENCE_KEY", &inference),
            ("CYXWIZ_DEPLOY_KEY", &deploy),
            ("CYXWIZ_EVIL_LIBRARY", &evil),
            ("CYXWIZ_EVIL_MARKER", &marker),
        ],
    );
    assert!(!marker.exists(), "a caller's library ran inside the node");
    assert!(running.child.try_wait().unwrap().is_none(), "the node died");
    // No caller text forged a log line.
    let log = running.drain_log().join("\n");
    assert!(
        !log.lines()
            .any(|l| l.contains("INFO forged line") && !l.contains("job")),
        "{log}"
    );
    assert!(running.stop().success());

    // The audit log kept the refusals with the caller's address, small and escaped.
    let store = cyxwiz_node::store::Store::open(&node.data_dir().join("node.db")).unwrap();
    let events = store.recent_audit(10_000).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.1 == "auth_failed" && e.3.contains("grpc from 127.0.0.1")),
        "{events:?}"
    );
    assert!(events.iter().all(|e| e.2.len() <= 512 && e.3.len() <= 2048));
    assert!(events
        .iter()
        .all(|e| !e.2.contains('\n') && !e.3.contains('\n')));
    // Key use reached the database (batched, flushed at shutdown).
    let keys = store.list_keys().unwrap();
    let app = keys.iter().find(|k| k.name == "app").unwrap();
    assert!(app.request_count >= 1, "{app:?}");
    assert!(app.scopes == [cyxwiz_node::store::keys::Scope::Inference]);
}

#[test]
fn grpc_over_tls_and_bad_tls_files() {
    let node = Node::new();
    let dir = node.data_dir();
    // A test CA and a leaf certificate for localhost signed by it.
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=cyxwiz test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
    let port = free_port();
    node.write_config(&format!(
        "{}\n[grpc.tls]\nenabled = true\ncert_path = \"cert.pem\"\nkey_path = \"key.pem\"\n",
        config()
    ));
    let running = node.start(&["--grpc-ports", &port.to_string()]);
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use cyxwiz_proto::protocol::{
            deployment_service_client::DeploymentServiceClient, ListDeploymentsRequest,
        };
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
            .domain_name("localhost");
        let channel = tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let listed = DeploymentServiceClient::new(channel)
            .list_deployments(ListDeploymentsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.deployments[0].deployment_id, "classifier");
        // A plaintext client gets no answer from the TLS port.
        let plain = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .timeout(std::time::Duration::from_secs(5))
            .connect()
            .await;
        if let Ok(channel) = plain {
            assert!(DeploymentServiceClient::new(channel)
                .list_deployments(ListDeploymentsRequest::default())
                .await
                .is_err());
        }
    });
    drop(running);

    // A missing key file is a one-line startup error naming it.
    node.write_config(&format!(
        "{}\n[grpc.tls]\nenabled = true\ncert_path = \"cert.pem\"\nkey_path = \"missing.pem\"\n",
        config()
    ));
    let out = node.cli(&[
        "run",
        "--grpc-ports",
        &free_port().to_string(),
        "--api-port",
        "0",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.contains("missing.pem"),
        "{err}"
    );
}
