#!/usr/bin/env python3
"""The reference for tests/benches/api.rs: a Python onnxruntime loop on the int8 MiniLM
(tokenizers + mean pooling + L2 in NumPy), 2 threads, one sentence per call and 16 per call,
over the same kind of sentences the node is sent. Prints embeddings/s as one JSON object.

Usage: bench_embeddings.py MODELS_DIR COUNT
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

SENTENCES = [f"Sentence number {i} about distributed machine learning nodes." for i in range(64)]


def ort_rate(models, n, batch, threads):
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
    start = time.perf_counter()
    for i in range(0, n, batch):
        embed([SENTENCES[(i + j) % len(SENTENCES)] for j in range(batch)])
    return n / (time.perf_counter() - start)


def main():
    models, n = Path(sys.argv[1]), int(sys.argv[2])
    result = {"Python onnxruntime, 1 per call": ort_rate(models, n, 1, 2),
              "Python onnxruntime, 16 per call": ort_rate(models, n, 16, 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
