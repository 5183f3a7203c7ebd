#!/usr/bin/env python3
"""Reference latency for the ONNX benchmark: Python onnxruntime on the same model and input.

Usage: ort_reference.py MODEL INPUT_NAME SHAPE(comma-separated) ITERATIONS THREADS
Input values are arange(n)/n as float32, as the Rust side feeds them. Prints the median
microseconds per session.run over 7 rounds.
"""
import sys
import time

import numpy as np
import onnxruntime as ort

model, name, shape, iters, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
shape = [int(d) for d in shape.split(",")]
n = int(np.prod(shape))
x = (np.arange(n, dtype=np.float32) / n).reshape(shape)
opts = ort.SessionOptions()
if threads > 0:
    opts.intra_op_num_threads = threads
session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
feed = {name: x}
for _ in range(min(iters, 20)):
    session.run(None, feed)
rounds = []
for _ in range(7):
    start = time.perf_counter()
    for _ in range(iters):
        session.run(None, feed)
    rounds.append((time.perf_counter() - start) / iters)
rounds.sort()
print(f"{rounds[3] * 1e6:.2f}")
