"""Two of airbench94_muon's parts measured on their own, on whatever device is here (a benchmark,
not a test; the figures are in docs/benchmarks.md):

- the whitening layer's error under bf16 autocast, with and without ``whiten_in_fp32``: the RMS
  error of each of its 12 directions against fp64, relative to that direction's RMS, on
  ``--images`` CIFAR-10 training images fitted with ``init_from_data`` as in a run;
- a training step (forward, backward) with the whitening bias still training and with it frozen
  (``blitz.freezing``), interleaved, medians.

    python bench/airbench_parts.py --data-root ../shared/data/cifar10
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from blitz.plugins import airbench
from blitz.plugins.cifar10 import MEAN, STD, load_cifar10


def whitening_errors(images: torch.Tensor) -> dict[bool, list[float]]:
    """Relative RMS error of the 12 whitened directions under bf16 autocast, per setting."""
    errors = {}
    for fp32 in (False, True):
        torch.manual_seed(0)
        model = airbench.build_airbench(num_classes=10, input_shape=(3, 32, 32), whiten_in_fp32=fp32)
        model.init_from_data(images)  # as the engine: fitted on the images' device, then moved there
        model = model.to(images.device)
        with torch.no_grad():
            exact = F.conv2d(images.double(), model.whiten.weight.double(), model.whiten.bias.double())
            with torch.autocast(images.device.type, dtype=torch.bfloat16):
                out = model.whitened(images)
        rms = lambda t: t.pow(2).mean(dim=(0, 2, 3)).sqrt()  # noqa: E731
        errors[fp32] = (rms(out.double() - exact) / rms(exact))[:12].tolist()  # the 12 others are their negations
    return errors


def step_times(images: torch.Tensor, labels: torch.Tensor, rounds: int) -> dict[str, float]:
    """Median ms of a forward and backward pass with the whitening bias training and frozen."""
    torch.manual_seed(0)
    model = airbench.build_airbench(num_classes=10, input_shape=(3, 32, 32), head_std=1.0, scaling_factor=1 / 256)
    model = model.to(images.device, memory_format=torch.channels_last)
    x = images.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        F.cross_entropy(model(x), labels, label_smoothing=0.2).backward()
        for p in model.parameters():
            p.grad = None
        if x.is_cuda:
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    times: dict[str, list[float]] = {"training": [], "frozen": []}
    for r in range(rounds):
        for name in (("training", "frozen") if r % 2 else ("frozen", "training")):
            model.whiten.bias.requires_grad_(name == "training")
            start = time.perf_counter()
            step()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding cifar-10-batches-py/")
    parser.add_argument("--images", type=int, default=500, help="training images for the whitening error")
    parser.add_argument("--batch-size", type=int, default=200, help="batch of the timed steps")
    parser.add_argument("--rounds", type=int, default=12, help="timed steps of each kind")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    split = load_cifar10(root=args.data_root).train
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    n = max(args.images, args.batch_size)
    images = ((split.images[:n].float() / 255 - mean) / std).to(device)
    errors = whitening_errors(images[: args.images])
    for fp32, values in errors.items():
        print(f"whitening error, bf16 autocast{' + whiten_in_fp32' if fp32 else ''}: "
              + " ".join(f"{100 * v:.2f}" for v in values) + " %")
    times = step_times(images[: args.batch_size], split.labels[: args.batch_size].to(device), args.rounds)
    print(f"step (batch {args.batch_size}, fp32, {device}): whitening bias training {times['training']:.0f} ms, "
          f"frozen {times['frozen']:.0f} ms ({100 * (times['frozen'] / times['training'] - 1):+.1f} %)")


if __name__ == "__main__":
    main()
