"""Time of one training step of the tutorial recipe (LeNet, batch 4, SGD) on the CPU, by variant.

The variants run in one process, interleaved round by round on fresh random batches (a shared
machine's speed drifts by 10-20 % over minutes), and the median per variant is reported:

- `direct`: blitz's LeNet through its direct gradients (`LeNet.direct_gradients`: the fused
  kernels of `plugins/lenet_cpu_kernel.py` without autograd) and LeanSGD, as `blitz run --recipe
  tutorial` trains;
- `fused`: the same kernels as one autograd node, with `loss.backward()`;
- `modules`: the same LeNet through autograd's modules (`fused_cpu_step=False`);
- `torch-sgd`: the direct gradients with `torch.optim.SGD(fused=True)` instead of LeanSGD.

Each runs with 1 thread and with `--threads` threads. Denormal floats are flushed to zero (set
before any thread starts, so every thread flushes): on these random batches many of LeNet's ReLU
features stay off, SGD's momentum decays their weights' buffers into denormals, and x86 CPUs
compute on those 10-100x slower, which CIFAR-10's training hardly ever meets (docs/benchmarks.md);
`--keep-denormals` times the step with them. A benchmark, not a test:

    python bench/lenet_step.py --rounds 12

With ``--batch-sizes 1 2 4 8`` it times blitz's step alone (1 thread) at each batch size instead
and fits time = fixed + per-image x batch: the fixed part is what a step costs whatever the
arithmetic (op dispatch, autograd, loss, the optimizer), the floor for the tutorial's batch of 4.
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


def make_step(kernel: str, lean: bool) -> Step:
    """One training step; ``kernel`` is "direct", "fused" (one autograd node) or "modules"."""
    torch.manual_seed(0)
    net = LeNet(fused_cpu_step=kernel != "modules")
    optimizer_class = LeanSGD if lean else torch.optim.SGD
    optimizer = optimizer_class(net.parameters(), lr=0.001, momentum=0.9, fused=True)
    loss_fn = nn.CrossEntropyLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        if kernel == "direct":
            net.direct_gradients(x, y, loss_fn)
        else:
            loss_fn(net(x), y).backward()
        optimizer.step()

    return step


def interleaved_times(steps: dict[str, tuple[Step, int, int]], rounds: int, count: int) -> dict[str, list[float]]:
    """µs per step of each (step, threads, batch size), interleaved round by round on fresh batches."""
    data = {
        batch: (torch.randn(count, batch, 3, 32, 32), torch.randint(0, 10, (count, batch)))
        for batch in {b for _, _, b in steps.values()}
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, (step, threads, batch) in steps.items():
            images, labels = data[batch]
            torch.set_num_threads(threads)
            for i in range(min(10, count)):  # warm caches and the thread pool
                step(images[i], labels[i])
            start = time.perf_counter()
            for i in range(count):
                step(images[i], labels[i])
            times[name].append((time.perf_counter() - start) / count * 1e6)
    return times


def sweep(batch_sizes: list[int], rounds: int, count: int) -> None:
    times = interleaved_times({f"batch {b}": (make_step("direct", True), 1, b) for b in batch_sizes}, rounds, count)
    medians = {b: statistics.median(times[f"batch {b}"]) for b in batch_sizes}
    print(f"{'batch':>5} {'median µs/step':>15} {'images/s':>9}")
    for b, median in medians.items():
        print(f"{b:5} {median:15.1f} {b * 1e6 / median:9,.0f}")
    if len(medians) >= 2:
        per_image, fixed = statistics.linear_regression(list(medians), list(medians.values()))
        print(f"fit: {fixed:.0f} µs fixed + {per_image:.0f} µs per image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=400, help="steps per variant per round")
    parser.add_argument("--threads", type=int, default=2, help="the second thread count to try")
    parser.add_argument("--batch-sizes", type=int, nargs="+", metavar="B",
                        help="instead: blitz's step at these batch sizes, split into fixed and per-image time")
    parser.add_argument("--keep-denormals", action="store_true",
                        help="compute with denormal floats, as random batches make them (CIFAR-10's training does not)")
    args = parser.parse_args()
    torch.set_flush_denormal(not args.keep_denormals)
    try:
        if args.batch_sizes:
            sweep(args.batch_sizes, args.rounds, args.steps)
        else:
            compare_variants(args.rounds, args.steps, args.threads)
    finally:
        torch.set_flush_denormal(False)  # the CPU's default (main() also runs in the tests' process)


def compare_variants(rounds: int, steps: int, threads_tried: int) -> None:
    variants = {
        f"{name} x{threads}": (make_step(kernel, lean), threads, 4)
        for name, kernel, lean in (
            ("direct", "direct", True), ("fused", "fused", True), ("modules", "modules", True), ("torch-sgd", "direct", False)
        )
        for threads in sorted({1, threads_tried})
    }
    times = interleaved_times(variants, rounds, steps)

    base = statistics.median(times["direct x1"])
    print(f"{'variant':16} {'median µs/step':>15} {'min':>7} {'max':>7} {'images/s':>9} {'vs direct x1':>13}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:16} {median:15.1f} {min(values):7.1f} {max(values):7.1f} {4e6 / median:9,.0f} {median / base:13.2f}")


if __name__ == "__main__":
    main()
