#!/usr/bin/env python3
"""Tensor inference on one deployment of a running node, over gRPC (InferenceService.Infer,
raw little-endian bytes) and over HTTP (/v1/predict, JSON numbers), same inputs, same
process: prints requests/s and median latency for each and their ratio.

Usage (a node serving the rapidocr classifier as `text-orientation`, e.g. scripts/quickstart):
  scripts/bench_grpc_vs_http.py [--grpc 127.0.0.1:50057] [--http http://127.0.0.1:8000]
                                [--model text-orientation] [--n 200]
Needs grpcio, grpcio-tools, httpx and numpy (the test venv has them).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import grpc
import httpx
import numpy as np
from grpc_tools import protoc

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def stubs():
    out = tempfile.mkdtemp(prefix="cyxwiz-stubs-")
    proto = os.path.join(ROOT, "proto", "proto")
    files = [os.path.join("cyxwiz", f) for f in sorted(os.listdir(os.path.join(proto, "cyxwiz")))]
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    if protoc.main(["protoc", f"-I{proto}", f"-I{include}", f"--python_out={out}",
                    f"--grpc_python_out={out}", *files]) != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpc", default="127.0.0.1:50057")
    ap.add_argument("--http", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default="text-orientation")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    stubs()
    from cyxwiz import common_pb2, inference_pb2, inference_pb2_grpc

    x = np.random.default_rng(1).random((1, 3, 48, 192), dtype=np.float32)
    channel = grpc.insecure_channel(args.grpc)
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    request = inference_pb2.InferRequest(deployment_id=args.model, inputs=[inference_pb2.TensorData(
        name="x", shape=list(x.shape), dtype=common_pb2.DATA_TYPE_FLOAT32, data=x.tobytes())])
    client = httpx.Client(timeout=60)
    body = {"model": args.model, "inputs": {"x": {"dtype": "float32", "shape": list(x.shape),
                                                  "data": x.ravel().tolist()}}}

    def grpc_call():
        r = stub.Infer(request)
        return np.frombuffer(r.outputs[0].data, dtype="<f4")

    def http_call():
        r = client.post(f"{args.http}/v1/predict", json=body)
        r.raise_for_status()
        (t,) = r.json()["outputs"].values()
        return np.array(t["data"], dtype=np.float32)

    np.testing.assert_allclose(grpc_call(), http_call(), rtol=1e-6, atol=1e-6)
    rows = []
    for name, call in (("gRPC Infer", grpc_call), ("HTTP /v1/predict", http_call)):
        for _ in range(10):
            call()
        times = []
        start = time.perf_counter()
        for _ in range(args.n):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        total = time.perf_counter() - start
        rows.append((name, args.n / total, statistics.median(times) * 1000))
    print(f"{'path':<18} {'req/s':>8} {'median ms':>10}")
    for name, rate, median in rows:
        print(f"{name:<18} {rate:8.1f} {median:10.2f}")
    print(f"gRPC / HTTP throughput: {rows[0][1] / rows[1][1]:.2f}x (same inputs, same outputs, one client)")


if __name__ == "__main__":
    main()
