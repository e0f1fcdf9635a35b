"""A hand-written loop doing the same work as `blitz run --recipe tutorial`, for measuring overhead.

The same work: one uint8 tensor, a per-epoch permutation, normalization as one multiply-add per
batch, blitz's LeNet module (through its direct gradients, as blitz's engine trains it), SGD
class and CPU thread tuner (1 or 2 threads, as the recipe's `cpu_threads = "auto"`), freed memory
kept for reuse as every blitz command keeps it (`blitz.memory`), and a test evaluation per epoch;
none of blitz's machinery: no plugins, no config, no progress bar, no logging, no checkpoints, no
report. `make bench` compares its training time with blitz's (the target: blitz at most 5 %
slower).
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

_WALL_START = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from blitz.memory import keep_freed_memory  # noqa: E402
from blitz.plugins.lenet import LeNet  # noqa: E402
from blitz.plugins.optimizers import LeanSGD  # noqa: E402
from blitz.thread_tuner import ThreadTuner  # noqa: E402


def load(folder: Path, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in names:
        with (folder / name).open("rb") as f:
            # keys are str in the official files, bytes where written from Python 3 (the tests' fixtures)
            entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in pickle.load(f, encoding="latin1").items()}
        images.append(entry["data"].reshape(-1, 3, 32, 32))
        labels.append(np.asarray(entry["labels"]))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)).long()


def thread_count(text: str) -> str:
    if text != "auto" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"give a whole number of threads or auto, not {text!r}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-threads", default="auto", type=thread_count, help="threads for training steps, or auto (the recipe's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    keep_freed_memory()

    folder = args.data_root / "cifar-10-batches-py"
    train_x, train_y = load(folder, [f"data_batch_{i}" for i in range(1, 6)])
    test_x, test_y = load(folder, ["test_batch"])
    scale, shift = 1 / (255 * 0.5), -0.5 / 0.5  # the tutorial's Normalize(0.5, 0.5)

    torch.manual_seed(args.seed)
    tuner = ThreadTuner() if args.cpu_threads == "auto" and torch.get_num_threads() > 1 else None
    eval_threads = torch.get_num_threads()
    if tuner is None:
        eval_threads = 1 if args.cpu_threads == "auto" else int(args.cpu_threads)
        torch.set_num_threads(eval_threads)
    net = LeNet()
    optimizer = LeanSGD(net.parameters(), lr=0.001, momentum=0.9, fused=True)
    criterion = nn.CrossEntropyLoss()
    n, b = len(train_y), args.batch_size

    train_seconds = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        g = torch.Generator().manual_seed(args.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g)
        loss_sum = torch.zeros(())
        net.train()
        if tuner:
            tuner.start()
        for i in range(0, n, b):
            index = order[i : i + b]
            x = train_x[index].float().mul_(scale).add_(shift)
            optimizer.zero_grad(set_to_none=True)
            loss = net.direct_gradients(x, train_y[index], criterion)  # as blitz's engine: no autograd
            if loss is None:  # a batch the direct path does not take
                loss = criterion(net(x), train_y[index])
                loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            if tuner:
                tuner.after_step(len(index))
        train_seconds += time.perf_counter() - start
        torch.set_num_threads(eval_threads)
        net.eval()
        correct = 0
        with torch.inference_mode():
            for i in range(0, len(test_y), 1000):
                logits = net(test_x[i : i + 1000].float().mul_(scale).add_(shift))
                correct += int((logits.argmax(1) == test_y[i : i + 1000]).sum())
        accuracy = correct / len(test_y)
        print(f"epoch {epoch}: train loss {float(loss_sum) / (n // b):.3f}  test accuracy {100 * accuracy:.2f} %")

    result = {
        "name": "handwritten-loop",
        "images_per_s": n * args.epochs / train_seconds,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - _WALL_START,
        "test_accuracy": accuracy,
        "epochs": args.epochs,
        "torch": torch.__version__,
        "device": "cpu",
    }
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
