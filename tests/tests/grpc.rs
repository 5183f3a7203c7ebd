//! The node's gRPC DeploymentService and InferenceService from a second language: Python
//! `grpcio` stubs generated from our proto/ files (tests/grpc_python) create a deployment over
//! gRPC, run Infer, and call the same model over HTTP; a model deployed by config answers over
//! gRPC. Then the gRPC TLS option with a self-signed certificate.

mod common;

use common::{classifier, models_dir, stderr, stdout, venv_python, Node};
use std::{path::PathBuf, process::Command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    let python = venv_python();
    let node = Node::new();
    node.write_config(&config());
    let outside = node.data_dir().join("elsewhere/cls.onnx");
    std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
    std::fs::copy(classifier(), &outside).unwrap();
    let port = free_port();
    let running = node.start(&["--grpc-ports", &port.to_string()]);
    common::wait_ready(&running);

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/grpc_python",
        ])
        .current_dir(&root)
        .env("CYXWIZ_GRPC_ADDR", format!("127.0.0.1:{port}"))
        .env("CYXWIZ_HTTP_BASE", format!("http://{}", running.addr))
        .env("CYXWIZ_CLASSIFIER", classifier())
        .env("CYXWIZ_OUTSIDE_MODEL", &outside)
        .env("CYXWIZ_PROTO_DIR", root.join("proto/proto"))
        .output()
        .unwrap();
    println!("{}", stdout(&out));
    assert!(
        out.status.success(),
        "pytest failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
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
