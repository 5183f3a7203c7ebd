"""The critical hardening findings, replayed from a second language against a node exposed
the way an operator would expose it (`[api] require_auth = true`, `[grpc] require_auth =
true`): every crafted request gets its safe answer and the node stays healthy.

Environment (set by tests/tests/grpc.rs): CYXWIZ_GRPC_ADDR, CYXWIZ_HTTP_BASE,
CYXWIZ_CLASSIFIER (a model inside the node's model dirs), CYXWIZ_PROTO_DIR,
CYXWIZ_INFERENCE_KEY (scope inference), CYXWIZ_DEPLOY_KEY (scopes inference,deploy),
CYXWIZ_EVIL_LIBRARY (a shared library whose constructor writes CYXWIZ_EVIL_MARKER).
"""

import json
import os
import time

import grpc
import httpx
import numpy as np
import pytest

import stubs  # noqa: F401  (generates the cyxwiz package)
from cyxwiz import common_pb2, deployment_pb2, deployment_pb2_grpc  # noqa: E402
from cyxwiz import inference_pb2, inference_pb2_grpc, node_pb2, node_pb2_grpc  # noqa: E402

ADDR = os.environ["CYXWIZ_GRPC_ADDR"]
HTTP = os.environ["CYXWIZ_HTTP_BASE"]
CLASSIFIER = os.environ["CYXWIZ_CLASSIFIER"]
INFERENCE_KEY = os.environ["CYXWIZ_INFERENCE_KEY"]
DEPLOY_KEY = os.environ["CYXWIZ_DEPLOY_KEY"]
EVIL = os.environ["CYXWIZ_EVIL_LIBRARY"]
MARKER = os.environ["CYXWIZ_EVIL_MARKER"]
SHAPE = [1, 3, 48, 192]


def key(k):
    return [("authorization", f"Bearer {k}")]


@pytest.fixture(scope="module")
def channel():
    with grpc.insecure_channel(ADDR) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


def code_of(call, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as e:
        call(*args, **kwargs)
    return e.value.code(), e.value.details()


def tensor():
    return inference_pb2.TensorData(name="x", shape=SHAPE, dtype=common_pb2.DATA_TYPE_FLOAT32,
                                    data=np.zeros(SHAPE, np.float32).tobytes())


def config(name, **params):
    return deployment_pb2.DeploymentConfig(
        deployment_id=name,
        type=common_pb2.DEPLOYMENT_TYPE_LOCAL_NODE,
        model=deployment_pb2.ModelInfo(name=name, local_path=CLASSIFIER, format=common_pb2.MODEL_FORMAT_ONNX),
        runtime_params={"plugin": "onnx-tract", "input_shapes": json.dumps({"x": SHAPE}), **params},
    )


def assert_healthy():
    r = httpx.get(f"{HTTP}/health", timeout=5)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"


def test_every_grpc_service_but_assign_job_needs_a_key(channel):
    dep = deployment_pb2_grpc.DeploymentServiceStub(channel)
    inf = inference_pb2_grpc.InferenceServiceStub(channel)
    node = node_pb2_grpc.NodeServiceStub(channel)
    calls = [
        (dep.CreateDeployment, deployment_pb2.CreateDeploymentRequest(config=config("takeover"))),
        (dep.StopDeployment, deployment_pb2.StopDeploymentRequest(deployment_id="classifier")),
        (dep.DeleteDeployment, deployment_pb2.DeleteDeploymentRequest(deployment_id="classifier")),
        (dep.GetDeployment, deployment_pb2.GetDeploymentRequest(deployment_id="classifier")),
        (dep.ListDeployments, deployment_pb2.ListDeploymentsRequest()),
        (dep.GetDeploymentMetrics, deployment_pb2.GetDeploymentMetricsRequest(deployment_id="classifier")),
        (inf.Infer, inference_pb2.InferRequest(deployment_id="classifier", inputs=[tensor()])),
        (inf.GetModelInfo, inference_pb2.GetModelInfoRequest(deployment_id="classifier")),
        (node.GetNodeMetrics, node_pb2.GetNodeMetricsRequest()),
    ]
    for call, request in calls:
        for metadata in (None, key("cyx-" + "0" * 64), [("authorization", "Basic abc")]):
            code, details = code_of(call, request, metadata=metadata, timeout=30)
            assert code == grpc.StatusCode.UNAUTHENTICATED, (call, details)
    # The deployment is untouched and still serves its owner.
    answer = inf.Infer(inference_pb2.InferRequest(deployment_id="classifier", inputs=[tensor()]),
                       metadata=key(INFERENCE_KEY))
    assert answer.status == common_pb2.STATUS_SUCCESS
    # AssignJob stays open (the central server sends no credentials) and is judged by policy.
    reply = node.AssignJob(node_pb2.AssignJobRequest(job=common_pb2.JobConfig(
        job_id="0b6f3e1c-7a52-4a55-9d1f-3b1f0d1c2e3f", job_type=common_pb2.JOB_TYPE_TRAINING)))
    assert reply.accepted is False and reply.error.message


def test_scopes_separate_inference_from_deployment(channel):
    dep = deployment_pb2_grpc.DeploymentServiceStub(channel)
    code, details = code_of(dep.CreateDeployment, deployment_pb2.CreateDeploymentRequest(config=config("x")),
                            metadata=key(INFERENCE_KEY))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "`deploy` scope" in details
    code, _ = code_of(dep.StopDeployment, deployment_pb2.StopDeploymentRequest(deployment_id="classifier"),
                      metadata=key(INFERENCE_KEY))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    listed = dep.ListDeployments(deployment_pb2.ListDeploymentsRequest(), metadata=key(INFERENCE_KEY))
    assert "classifier" in {d.deployment_id for d in listed.deployments}
    created = dep.CreateDeployment(deployment_pb2.CreateDeploymentRequest(config=config("mine")),
                                   metadata=key(DEPLOY_KEY), timeout=120)
    assert created.status == common_pb2.STATUS_SUCCESS
    assert dep.DeleteDeployment(deployment_pb2.DeleteDeploymentRequest(deployment_id="mine"),
                                metadata=key(DEPLOY_KEY)).status == common_pb2.STATUS_SUCCESS


def test_callers_cannot_choose_native_libraries_or_thread_counts(channel):
    dep = deployment_pb2_grpc.DeploymentServiceStub(channel)
    cfg = config("evil", library=EVIL)
    del cfg.runtime_params["plugin"]
    code, details = code_of(dep.CreateDeployment, deployment_pb2.CreateDeploymentRequest(config=cfg),
                            metadata=key(DEPLOY_KEY))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "`library`" in details, details
    cfg = config("evil2", plugin="onnx-ort", library=EVIL)
    del cfg.runtime_params["input_shapes"]
    code, details = code_of(dep.CreateDeployment, deployment_pb2.CreateDeploymentRequest(config=cfg),
                            metadata=key(DEPLOY_KEY))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "`library`" in details, details
    assert not os.path.exists(MARKER), "the caller's library was loaded into the node"

    cfg = config("threads")
    cfg.threads = 2147483647
    code, details = code_of(dep.CreateDeployment, deployment_pb2.CreateDeploymentRequest(config=cfg),
                            metadata=key(DEPLOY_KEY))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "`threads` must be at most" in details, details
    cfg = config("big", slots="64")
    code, details = code_of(dep.CreateDeployment, deployment_pb2.CreateDeploymentRequest(config=cfg),
                            metadata=key(DEPLOY_KEY))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert_healthy()


def test_assign_job_is_bounded_checked_and_logged_safely(channel):
    node = node_pb2_grpc.NodeServiceStub(channel)
    huge = common_pb2.JobConfig(job_id="j" * (5 << 20), job_type=common_pb2.JOB_TYPE_TRAINING)
    code, details = code_of(node.AssignJob, node_pb2.AssignJobRequest(job=huge))
    # tonic's answer to a message over [grpc] max_message_bytes.
    assert code == grpc.StatusCode.OUT_OF_RANGE and "too large" in details, (code, details)
    long_id = common_pb2.JobConfig(job_id="j" * 1000, job_type=common_pb2.JOB_TYPE_TRAINING)
    code, details = code_of(node.AssignJob, node_pb2.AssignJobRequest(job=long_id))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "128" in details
    forged = common_pb2.JobConfig(job_id="job\n2026-01-01T00:00:00Z  INFO forged line",
                                  job_type=common_pb2.JOB_TYPE_TRAINING)
    code, _ = code_of(node.AssignJob, node_pb2.AssignJobRequest(job=forged))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # The per-address budget ([grpc] assign_job_per_minute = 20 in this test) runs out.
    codes = []
    for i in range(30):
        try:
            node.AssignJob(node_pb2.AssignJobRequest(job=common_pb2.JobConfig(
                job_id=f"job-{i}", job_type=common_pb2.JOB_TYPE_TRAINING)))
            codes.append("ok")
        except grpc.RpcError as e:
            codes.append(e.code())
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and codes[0] == "ok", codes
    assert_healthy()


def test_nested_lists_do_not_freeze_the_node():
    # 100 bytes that used to take exponential time in shape inference on the async runtime.
    body = '{"model": "classifier", "inputs": {"x": ' + "[" * 60 + "1" + "]" * 60 + "}}"
    started = time.monotonic()
    r = httpx.post(f"{HTTP}/v1/predict", content=body, timeout=30,
                   headers={"Authorization": f"Bearer {INFERENCE_KEY}", "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert time.monotonic() - started < 5
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert_healthy()
