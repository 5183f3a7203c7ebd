//! The node core seen from outside: one error kind for one failure on every transport (the
//! CLI over the control socket, gRPC, HTTP), and a deployment's `device` reaching the plugin
//! through the node (on this CPU-only machine, `cuda` loads with ONNX Runtime's logged CPU
//! fallback; a GPU machine runs it on the GPU).

mod common;

use common::{classifier, free_port, prefer_onnx_runtime, stderr, wait_ready, Node};
use cyxwiz_proto::protocol::{
    deployment_service_client::DeploymentServiceClient,
    inference_service_client::InferenceServiceClient, CreateDeploymentRequest, DeploymentConfig,
    InferRequest, ModelInfo,
};
use std::time::{Duration, Instant};

/// A JSON POST; the response body as JSON.
fn post_json(
    running: &common::Running,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let (status, _, text) = common::post_full(&running.addr, path, None, &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// Polls `/health` until deployment `name` has left pending/loading; returns its entry.
fn settled(running: &common::Running, name: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = running.get_json("/health");
        let model = body["models"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == name).cloned());
        if let Some(m) =
            model.filter(|m| !matches!(m["status"].as_str(), Some("pending" | "loading")))
        {
            return m;
        }
        assert!(Instant::now() < deadline, "{name} never settled: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_fails_to_load_gives_the_same_kind_on_every_transport() {
    let node = Node::new();
    // A truncated ONNX file in the node's own model directory.
    let broken = node.data_dir().join("models/broken.onnx");
    let bytes = std::fs::read(classifier()).unwrap();
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    node.write_config("[grpc]\nhost = \"127.0.0.1\"\n");
    let port = free_port();
    let running = node.start(&["--grpc-ports", &port.to_string()]);

    // The CLI, through DaemonService on the control socket: invalid input, one line.
    let out = node.cli(&["deploy", broken.to_str().unwrap(), "--name", "cli-broken"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("error (invalid input)"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // gRPC DeploymentService: INVALID_ARGUMENT.
    let mut deployments = DeploymentServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let status = deployments
        .create_deployment(CreateDeploymentRequest {
            config: Some(DeploymentConfig {
                deployment_id: "grpc-broken".into(),
                model: Some(ModelInfo {
                    local_path: broken.display().to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // Using the failed deployment: unavailable on HTTP (503) and gRPC (UNAVAILABLE) alike.
    assert_eq!(settled(&running, "grpc-broken")["status"], "failed");
    let (code, body) = post_json(
        &running,
        "/v1/predict",
        &serde_json::json!({"model": "grpc-broken", "inputs": {"x": [[0.0]]}}),
    );
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["type"], "service_unavailable", "{body}");
    let mut inference = InferenceServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let status = inference
        .infer(InferRequest {
            deployment_id: "grpc-broken".into(),
            inputs: vec![Default::default()],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // An unknown model: not found on both.
    let (code, _) = post_json(
        &running,
        "/v1/predict",
        &serde_json::json!({"model": "nope", "inputs": {"x": [[0.0]]}}),
    );
    assert_eq!(code, 404);
    let status = inference
        .infer(InferRequest {
            deployment_id: "nope".into(),
            inputs: vec![Default::default()],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
}

#[test]
fn a_cuda_deployment_on_a_cpu_only_machine_loads_with_the_logged_cpu_fallback() {
    // This machine has no NVIDIA driver: the device pool passes `cuda` to onnx-ort, whose
    // ONNX Runtime (the PyPI CPU wheel) has no CUDA provider, so it runs on the CPU and says
    // why. (On a GPU machine with onnxruntime-gpu the same deployment runs on GPU 0.)
    let node = Node::new();
    node.write_config(&format!(
        "{}\n[[deployments]]\nname = \"cls\"\npath = \"{}\"\nplugin = \"onnx-ort\"\ndevice = \"cuda\"\n",
        prefer_onnx_runtime(),
        classifier().display()
    ));
    let mut running = node.start(&[]);
    wait_ready(&running);
    let (_, health) = running.get_json("/health");
    assert_eq!(health["models"][0]["plugin"], "onnx-ort", "{health}");
    assert_eq!(health["models"][0]["status"], "ready", "{health}");
    let log = running.drain_log().join("\n");
    assert!(log.contains("loading on a GPU device"), "{log}");
    assert!(
        log.contains("CUDA requested but unusable; running on the CPU"),
        "{log}"
    );

    // The same through the CLI (DaemonService.DeployModel's `device`); a device that does not
    // exist is invalid input.
    let cls = classifier();
    let out = node.cli(&[
        "deploy",
        cls.to_str().unwrap(),
        "--name",
        "cls-cli",
        "--plugin",
        "onnx-ort",
        "--device",
        "cuda",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = node.cli(&[
        "deploy",
        cls.to_str().unwrap(),
        "--name",
        "cls-tpu",
        "--device",
        "tpu",
    ]);
    assert!(
        stderr(&out).contains("error (invalid input)"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("device"), "{}", stderr(&out));

    // An unknown device is refused when the config is read, naming the key.
    let bad = Node::new();
    bad.write_config(&format!(
        "[[deployments]]\nname = \"cls\"\npath = \"{}\"\ndevice = \"tpu\"\n",
        classifier().display()
    ));
    let out = bad.cli(&["config", "show"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("deployments[0].device"),
        "{}",
        stderr(&out)
    );
}
