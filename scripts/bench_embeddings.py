#!/usr/bin/env python3
"""Embedding throughput, for tests/benches/api.rs: 16 concurrent HTTP clients against the
node's /v1/embeddings (one sentence per request) for each model name given, next to a Python
onnxruntime loop on the same int8 MiniLM (tokenizers + mean pooling + L2 in NumPy), one
sentence per call and in batches of 16. Prints one JSON object.

Usage: bench_embeddings.py BASE_URL MODELS_DIR MODEL [MODEL ...]
"""
import json
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

CLIENTS = 16
PER_CLIENT = 25
SENTENCES = [f"Sentence number {i} about distributed machine learning nodes." for i in range(64)]


def http_rate(base, model):
    def worker(k, out):
        with httpx.Client(timeout=60) as c:
            for j in range(PER_CLIENT):
                r = c.post(f"{base}/v1/embeddings",
                           json={"model": model, "input": SENTENCES[(k + j) % len(SENTENCES)]})
                r.raise_for_status()
        out.append(k)
    # warm-up
    httpx.post(f"{base}/v1/embeddings", json={"model": model, "input": SENTENCES[:4]},
               timeout=60).raise_for_status()
    done = []
    threads = [threading.Thread(target=worker, args=(k, done)) for k in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    assert len(done) == CLIENTS
    return CLIENTS * PER_CLIENT / elapsed


def ort_rate(models, batch, threads):
    tok = Tokenizer.from_file(str(models / "minilm" / "tokenizer.json"))
    tok.no_truncation()
    tok.enable_padding()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(models / "minilm" / "model.onnx"), opts,
                                providers=["CPUExecutionProvider"])

    def embed(texts):
        enc = tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        out = sess.run(None, {"input_ids": ids, "attention_mask": mask,
                              "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[..., None].astype(np.float32)
        v = (out * m).sum(1) / m.sum(1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    embed(SENTENCES[:batch])
    n = CLIENTS * PER_CLIENT
    start = time.perf_counter()
    for i in range(0, n, batch):
        embed([SENTENCES[(i + j) % len(SENTENCES)] for j in range(batch)])
    return n / (time.perf_counter() - start)


def main():
    base, models = sys.argv[1], Path(sys.argv[2])
    result = {f"node {m}": http_rate(base, m) for m in sys.argv[3:]}
    result["python onnxruntime, 1 per call"] = ort_rate(models, 1, 2)
    result["python onnxruntime, 16 per call"] = ort_rate(models, 16, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
