"""A second-language client of the node's gRPC services: Python `grpcio` stubs generated at
test time from our proto/ files create a deployment over gRPC, run Infer, then call the same
model over the node's HTTP API (and the other way round), with the error codes checked.

Environment (set by tests/tests/grpc.rs): CYXWIZ_GRPC_ADDR (host:port), CYXWIZ_HTTP_BASE
(http://host:port), CYXWIZ_CLASSIFIER (absolute model path inside the node's model dirs),
CYXWIZ_OUTSIDE_MODEL (a model file outside them), CYXWIZ_PROTO_DIR.
"""

import json
import os

import grpc
import httpx
import numpy as np
import pytest

ADDR = os.environ["CYXWIZ_GRPC_ADDR"]
HTTP = os.environ["CYXWIZ_HTTP_BASE"]
CLASSIFIER = os.environ["CYXWIZ_CLASSIFIER"]
OUTSIDE = os.environ["CYXWIZ_OUTSIDE_MODEL"]

import stubs  # noqa: E402,F401  (generates the cyxwiz package)
from cyxwiz import common_pb2, deployment_pb2, deployment_pb2_grpc  # noqa: E402
from cyxwiz import inference_pb2, inference_pb2_grpc  # noqa: E402

SHAPE = [1, 3, 48, 192]


@pytest.fixture(scope="module")
def channel():
    with grpc.insecure_channel(ADDR) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


def deployments(channel):
    return deployment_pb2_grpc.DeploymentServiceStub(channel)


def inference(channel):
    return inference_pb2_grpc.InferenceServiceStub(channel)


def tensor(x):
    return inference_pb2.TensorData(name="x", shape=list(x.shape), dtype=common_pb2.DATA_TYPE_FLOAT32,
                                    data=x.astype("<f4").tobytes())


def http_predict(model, x):
    r = httpx.post(f"{HTTP}/v1/predict", json={"model": model, "inputs": {
        "x": {"dtype": "float32", "shape": list(x.shape), "data": x.ravel().tolist()}}}, timeout=60)
    return r


def config(name, path, **params):
    return deployment_pb2.DeploymentConfig(
        deployment_id=name,
        type=common_pb2.DEPLOYMENT_TYPE_LOCAL_NODE,
        model=deployment_pb2.ModelInfo(name=name, local_path=path, format=common_pb2.MODEL_FORMAT_ONNX),
        runtime_params={"plugin": "onnx-tract", "input_shapes": json.dumps({"x": [-1, 3, 48, 192]}), **params},
    )


def test_deploy_over_grpc_infer_then_serve_over_http(channel):
    created = deployments(channel).CreateDeployment(
        deployment_pb2.CreateDeploymentRequest(config=config("cls-grpc", CLASSIFIER)), timeout=120)
    assert created.status == common_pb2.STATUS_SUCCESS
    d = created.deployment
    assert d.deployment_id == "cls-grpc"
    assert d.status == common_pb2.DEPLOYMENT_STATUS_READY
    assert d.endpoint_url == f"{HTTP}/v1"
    assert d.config.model.metadata["plugin"] == "onnx-tract"

    info = inference(channel).GetModelInfo(inference_pb2.GetModelInfoRequest(deployment_id="cls-grpc"))
    assert info.status == common_pb2.STATUS_SUCCESS
    assert [(s.name, list(s.shape), s.dtype) for s in info.input_specs] == [
        ("x", [-1, 3, 48, 192], common_pb2.DATA_TYPE_FLOAT32)]

    x = np.random.default_rng(7).random(SHAPE, dtype=np.float32)
    answer = inference(channel).Infer(inference_pb2.InferRequest(deployment_id="cls-grpc", inputs=[tensor(x)]))
    assert answer.status == common_pb2.STATUS_SUCCESS and answer.latency_ms > 0
    (out,) = answer.outputs
    assert out.dtype == common_pb2.DATA_TYPE_FLOAT32 and list(out.shape) == [1, 2]
    via_grpc = np.frombuffer(out.data, dtype="<f4").reshape(out.shape)
    assert np.isfinite(via_grpc).all()

    # The same deployment answers over HTTP, with the same numbers.
    r = http_predict("cls-grpc", x)
    assert r.status_code == 200, r.text
    (http_out,) = r.json()["outputs"].values()
    np.testing.assert_allclose(np.array(http_out["data"], dtype=np.float32).reshape(out.shape), via_grpc,
                               rtol=1e-6, atol=1e-6)

    listed = deployments(channel).ListDeployments(deployment_pb2.ListDeploymentsRequest())
    names = {d.deployment_id for d in listed.deployments}
    assert {"cls-grpc", "classifier"} <= names and listed.total_count == len(listed.deployments)
    got = deployments(channel).GetDeployment(deployment_pb2.GetDeploymentRequest(deployment_id="cls-grpc"))
    assert got.deployment.total_requests >= 2


def test_a_model_deployed_by_config_is_served_over_grpc(channel):
    x = np.full(SHAPE, 0.5, dtype=np.float32)
    answer = inference(channel).Infer(inference_pb2.InferRequest(deployment_id="classifier", inputs=[tensor(x)]))
    r = http_predict("classifier", x)
    assert r.status_code == 200, r.text
    (http_out,) = r.json()["outputs"].values()
    np.testing.assert_allclose(np.frombuffer(answer.outputs[0].data, dtype="<f4"),
                               np.array(http_out["data"], dtype=np.float32), rtol=1e-6, atol=1e-6)


def test_errors_carry_precise_codes(channel):
    inf = inference(channel)
    with pytest.raises(grpc.RpcError) as e:
        inf.Infer(inference_pb2.InferRequest(deployment_id="nope", inputs=[tensor(np.zeros(SHAPE, np.float32))]))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in e.value.details()
    bad = inference_pb2.TensorData(name="x", shape=SHAPE, dtype=common_pb2.DATA_TYPE_FLOAT32, data=b"\0" * 12)
    with pytest.raises(grpc.RpcError) as e:
        inf.Infer(inference_pb2.InferRequest(deployment_id="classifier", inputs=[bad]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "bytes" in e.value.details()
    wrong_name = inference_pb2.TensorData(name="y", shape=SHAPE, dtype=common_pb2.DATA_TYPE_FLOAT32,
                                          data=np.zeros(SHAPE, np.float32).tobytes())
    with pytest.raises(grpc.RpcError) as e:
        inf.Infer(inference_pb2.InferRequest(deployment_id="classifier", inputs=[wrong_name]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    dep = deployments(channel)
    with pytest.raises(grpc.RpcError) as e:
        dep.CreateDeployment(deployment_pb2.CreateDeploymentRequest(config=config("outside", OUTSIDE)))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and "model directories" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        dep.CreateDeployment(deployment_pb2.CreateDeploymentRequest(config=config("classifier", CLASSIFIER)))
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # A missing file inside the model directories is NOT_FOUND; outside them the answer is
    # the same as for a file that exists there (no probing of the node's file system).
    with pytest.raises(grpc.RpcError) as e:
        dep.CreateDeployment(deployment_pb2.CreateDeploymentRequest(
            config=config("missing", os.path.join(os.path.dirname(CLASSIFIER), "missing.onnx"))))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        dep.CreateDeployment(deployment_pb2.CreateDeploymentRequest(config=config("missing", "/nonexistent/m.onnx")))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.details().replace("/nonexistent/m.onnx", OUTSIDE) == \
        dep_error(dep, OUTSIDE).details()
    with pytest.raises(grpc.RpcError) as e:
        dep.GetDeployment(deployment_pb2.GetDeploymentRequest(deployment_id="nope"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def dep_error(dep, path):
    with pytest.raises(grpc.RpcError) as e:
        dep.CreateDeployment(deployment_pb2.CreateDeploymentRequest(config=config("outside", path)))
    return e.value


def test_stop_and_delete_reach_the_http_side(channel):
    dep = deployments(channel)
    dep.CreateDeployment(deployment_pb2.CreateDeploymentRequest(config=config("short-lived", CLASSIFIER)),
                         timeout=120)
    x = np.zeros(SHAPE, np.float32)
    assert http_predict("short-lived", x).status_code == 200
    stopped = dep.StopDeployment(deployment_pb2.StopDeploymentRequest(deployment_id="short-lived"))
    assert stopped.deployment.status == common_pb2.DEPLOYMENT_STATUS_STOPPED
    r = http_predict("short-lived", x)
    assert r.status_code == 503, r.text
    with pytest.raises(grpc.RpcError) as e:
        inference(channel).Infer(inference_pb2.InferRequest(deployment_id="short-lived", inputs=[tensor(x)]))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert dep.DeleteDeployment(deployment_pb2.DeleteDeploymentRequest(deployment_id="short-lived")).status \
        == common_pb2.STATUS_SUCCESS
    with pytest.raises(grpc.RpcError) as e:
        dep.GetDeployment(deployment_pb2.GetDeploymentRequest(deployment_id="short-lived"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert http_predict("short-lived", x).status_code == 404
