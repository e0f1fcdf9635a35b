"""Time of one training step of the tutorial recipe (LeNet, batch 4, SGD) on the CPU, by variant.

The variants run in one process, interleaved round by round on fresh random batches (a shared
machine's speed drifts by 10-20 % over minutes), and the median per variant is reported:

- `fused`: blitz's LeNet with its one-node CPU step (`plugins/lenet_cpu_kernel.py`) and LeanSGD,
  as `blitz run --recipe tutorial` trains;
- `modules`: the same LeNet through autograd's modules (`fused_cpu_step=False`);
- `torch-sgd`: the fused step with `torch.optim.SGD(fused=True)` instead of LeanSGD.

Each runs with 1 thread and with `--threads` threads. A benchmark, not a test:

    python bench/lenet_step.py --rounds 12
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from blitz.plugins.lenet import LeNet
from blitz.plugins.optimizers import LeanSGD

Step = Callable[[torch.Tensor, torch.Tensor], None]


def make_step(fused: bool, lean: bool) -> Step:
    torch.manual_seed(0)
    net = LeNet(fused_cpu_step=fused)
    optimizer_class = LeanSGD if lean else torch.optim.SGD
    optimizer = optimizer_class(net.parameters(), lr=0.001, momentum=0.9, fused=True)
    loss_fn = nn.CrossEntropyLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = loss_fn(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=400, help="steps per variant per round")
    parser.add_argument("--threads", type=int, default=2, help="the second thread count to try")
    args = parser.parse_args()

    images = torch.randn(args.steps, 4, 3, 32, 32)  # fresh data each step, as in training
    labels = torch.randint(0, 10, (args.steps, 4))
    variants = {
        f"{name} x{threads}": (make_step(fused, lean), threads)
        for name, fused, lean in (("fused", True, True), ("modules", False, True), ("torch-sgd", True, False))
        for threads in sorted({1, args.threads})
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (step, threads) in variants.items():
            torch.set_num_threads(threads)
            for i in range(10):  # warm caches and the thread pool
                step(images[i], labels[i])
            start = time.perf_counter()
            for i in range(args.steps):
                step(images[i], labels[i])
            times[name].append((time.perf_counter() - start) / args.steps * 1e6)

    base = statistics.median(times["fused x1"])
    print(f"{'variant':16} {'median µs/step':>15} {'min':>7} {'max':>7} {'images/s':>9} {'vs fused x1':>12}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:16} {median:15.1f} {min(values):7.1f} {max(values):7.1f} {4e6 / median:9,.0f} {median / base:12.2f}")


if __name__ == "__main__":
    main()
