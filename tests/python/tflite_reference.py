#!/usr/bin/env python3
"""Reference outputs for the TFLite plugins' tests, from runtimes the plugins do not share code
with: Google's LiteRT interpreter (`ai-edge-litert`, its own build of TFLite) and, for the
wake-word models, pymicro-wakeword's own streaming pipeline (its ctypes binding of the TF 2.17.1
C library, so the same kernels as the tflite-litert plugin but the package authors' driving
code).

Writes one JSON document to stdout: {"runtime": ..., "steps": [{"inputs": [T], "litert": [T],
"pymicro": [T]?}]} with T = {"name", "dtype", "shape", "data"}. Each step is one `invoke` on
the same interpreter, so streaming models carry their state from step to step.

Usage:
  tflite_reference.py image MODEL [--seed N]
      one invoke on a smooth seeded image in [-1, 1] shaped like the model's input
  tflite_reference.py speech MODEL --phrase TEXT --lib LIBTENSORFLOWLITE_C
      TEXT spoken by espeak-ng, resampled to 16 kHz mono by sox (no dither, so the same bytes every run), turned into microWakeWord
      features by pymicro-features, quantised as pymicro-wakeword does; one invoke per stride
"""
import argparse
import json
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
from ai_edge_litert import __version__ as litert_version
from ai_edge_litert.interpreter import Interpreter


def tensor(name, array):
    return {
        "name": name,
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "data": array.flatten().tolist(),
    }


def interpreter(model):
    it = Interpreter(model_path=str(model), num_threads=1)
    it.allocate_tensors()
    return it


def invoke(it, inputs):
    for detail, array in zip(it.get_input_details(), inputs):
        it.set_tensor(detail["index"], array)
    it.invoke()
    return [tensor(d["name"], it.get_tensor(d["index"]).copy()) for d in it.get_output_details()]


def image(args):
    it = interpreter(args.model)
    rng = np.random.default_rng(args.seed)
    inputs = []
    for detail in it.get_input_details():
        shape = detail["shape"]
        # A smooth pattern with some noise: activations spread like a photo's, not a test card's.
        h, w = np.meshgrid(np.linspace(0, 1, shape[1]), np.linspace(0, 1, shape[2]), indexing="ij")
        channels = [np.sin(3 * h + 2 * c) * np.cos(4 * w - c) for c in range(shape[3])]
        pattern = np.stack(channels, axis=-1)[None] + rng.normal(0, 0.05, size=shape)
        inputs.append(np.clip(pattern, -1, 1).astype(detail["dtype"]))
    step = {
        "inputs": [tensor(d["name"], a) for d, a in zip(it.get_input_details(), inputs)],
        "litert": invoke(it, inputs),
    }
    return [step]


def spoken(phrase, out_dir):
    raw, wav = out_dir / "espeak.wav", out_dir / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(raw), phrase], check=True)
    # Half a second of silence either side, as a microphone stream would have around a command.
    subprocess.run(
        ["sox", "-D", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav), "pad", "0.5", "0.5"],
        check=True,
    )
    with wave.open(str(wav), "rb") as f:
        return f.readframes(f.getnframes())


def speech(args):
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures

    with tempfile.TemporaryDirectory() as tmp:
        audio = spoken(args.phrase, Path(tmp))
    features = list(MicroWakeWordFeatures().process_streaming(audio))
    it = interpreter(args.model)
    detail = it.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    stride = int(detail["shape"][1])
    reference = MicroWakeWord(
        args.model.stem,
        wake_word=args.phrase,
        tflite_model=args.model,
        probability_cutoff=1.0,
        sliding_window_size=1,
        trained_languages=[],
        libtensorflowlite_c_path=args.lib,
    )
    out = it.get_output_details()[0]
    out_scale, out_zero = out["quantization"]
    steps = []
    for k in range(0, len(features) - stride + 1, stride):
        window = features[k : k + stride]
        # pymicro-wakeword's own quantisation of a stride of feature frames.
        quantised = np.round(np.concatenate(window, axis=1) / scale + zero_point).astype(
            detail["dtype"]
        )
        step = {"inputs": [tensor(detail["name"], quantised)], "litert": invoke(it, [quantised])}
        for frame in window:
            prob = reference.process_streaming_prob(frame)
        # Its dequantised probability, back to the model's quantised output.
        q = np.array([[round(prob / out_scale + out_zero)]], dtype=out["dtype"])
        step["pymicro"] = [tensor(out["name"], q)]
        steps.append(step)
    return steps


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("image")
    p.add_argument("model", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("speech")
    p.add_argument("model", type=Path)
    p.add_argument("--phrase", required=True)
    p.add_argument("--lib", required=True)
    args = parser.parse_args()
    steps = image(args) if args.mode == "image" else speech(args)
    json.dump({"runtime": f"ai-edge-litert {litert_version}", "steps": steps}, sys.stdout)


if __name__ == "__main__":
    main()
