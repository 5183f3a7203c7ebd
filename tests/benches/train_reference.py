"""PyTorch reference for tests/benches/training.rs: trains the bench's MLP or CNN on the same
Fashion-MNIST samples, in the same batches, with the same optimizer and threads, and prints one
JSON line with its training samples/s over the timed batches.

Run by the bench (with the venv of scripts/bench-training-setup); by hand:
  python3 tests/benches/train_reference.py --model mlp --samples 10000 --warmup-batches 10 \
      --batch 64 --threads 2 --data /usr/share/datasets/fashion-mnist
"""

import argparse
import gzip
import json
import time

import numpy as np
import torch
from torch import nn


def idx_prefix(path: str, header: int, count: int, item: int, magic: int) -> np.ndarray:
    """The first `count` items of an IDX file (gzip), checked against its header."""
    with gzip.open(path, "rb") as f:
        data = f.read(header + count * item)
    if int.from_bytes(data[0:4], "big") != magic:
        raise SystemExit(f"{path}: not an IDX file of magic {magic:#x}")
    if int.from_bytes(data[4:8], "big") < count or len(data) < header + count * item:
        raise SystemExit(f"{path}: fewer than {count} items")
    return np.frombuffer(data, np.uint8, count * item, header)


def fashion_mnist(directory: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` training images as [N, 1, 28, 28] float32 in [0, 1] (pixels / 255), labels int64."""
    images = idx_prefix(f"{directory}/train-images-idx3-ubyte.gz", 16, count, 784, 0x0803)
    labels = idx_prefix(f"{directory}/train-labels-idx1-ubyte.gz", 8, count, 1, 0x0801)
    x = torch.from_numpy(images.reshape(count, 1, 28, 28).astype(np.float32) / np.float32(255))
    return x, torch.from_numpy(labels.astype(np.int64))


def model(name: str) -> nn.Module:
    """The bench's models, layer for layer as tests/benches/training.rs defines them."""
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
    raise SystemExit(f"unknown model {name}")


def epoch(a: argparse.Namespace, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """One epoch of a fresh model: the timed seconds, the epoch's mean loss and accuracy."""
    torch.manual_seed(a.seed)
    net = model(a.model)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    loss_fn = nn.CrossEntropyLoss()
    # Per step, what the node's shared training loop does: forward, loss, backward, update,
    # and the batch's loss and correct count read back (the backends report both every step).
    total = len(y)
    steps = (total + a.batch - 1) // a.batch
    loss_sum, correct, start = 0.0, 0, time.perf_counter()
    for i in range(steps):
        if i == a.warmup_batches:
            start = time.perf_counter()
        xb, yb = x[i * a.batch:(i + 1) * a.batch], y[i * a.batch:(i + 1) * a.batch]
        opt.zero_grad(set_to_none=True)
        out = net(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(yb)
        correct += int((out.argmax(1) == yb).sum().item())
    return time.perf_counter() - start, loss_sum / total, correct / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["mlp", "cnn"], required=True)
    p.add_argument("--samples", type=int, default=10000, help="timed samples")
    p.add_argument("--warmup-batches", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--repeats", type=int, default=3, help="epochs measured; the fastest counts")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    total = a.warmup_batches * a.batch + a.samples
    x, y = fashion_mnist(a.data, total)
    runs = [epoch(a, x, y) for _ in range(a.repeats)]
    seconds = min(r[0] for r in runs)
    _, loss, accuracy = runs[0]

    print(json.dumps({
        "samples_per_s": a.samples / seconds,
        "seconds": seconds,
        "loss": loss,
        "accuracy": accuracy,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
