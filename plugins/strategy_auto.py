"""The ``auto`` strategy: the best the machine offers, saying what it picked and why."""

from __future__ import annotations

import os

import torch

from blitz import Register, Strategy, UsageError, hookimpl
from blitz.errors import StrategyUnavailableError
from blitz.plugins.strategy_cpu import CPUStrategy, check_cpu_device
from blitz.plugins.strategy_cuda import CUDAStrategy, cuda_device
from blitz.launch import check_ddp_device, launched_by_torchrun
from blitz.plugins.strategy_ddp import DDPStrategy


def build_auto(*, device: str | None = None) -> Strategy:
    if launched_by_torchrun():
        check_ddp_device(device)  # --device cpu: gloo on CPUs, as with --strategy ddp
        strategy: Strategy = DDPStrategy(device)
        reason = f"started by torchrun with WORLD_SIZE={os.environ.get('WORLD_SIZE')}"
    elif device is not None and not device.startswith(("cpu", "cuda")):
        raise UsageError(f"--device '{device}' is neither 'cpu' nor a CUDA device such as 'cuda:0'.")
    elif device is not None and device.startswith("cpu"):
        check_cpu_device(device)
        strategy = CPUStrategy("cpu")
        reason = "--device cpu was given"
    elif torch.cuda.is_available():
        strategy = CUDAStrategy(cuda_device(device))
        count = torch.cuda.device_count()
        reason = "a CUDA GPU is available" + (
            f" ({count} GPUs: use --strategy ddp --nproc-per-node {count} to use them all)" if count > 1 else ""
        )
    elif device is not None:  # asked for a GPU by name: training on the CPU instead would mislead
        raise StrategyUnavailableError(
            f"--device {device}: no CUDA GPU is available here; leave --device out (or give --device cpu) "
            "to train on the CPU."
        )
    else:
        strategy = CPUStrategy("cpu")
        reason = "no GPU found"
    describe = strategy.describe
    strategy.describe = lambda: f"auto picked {describe()}: {reason}"  # type: ignore[method-assign]
    return strategy


@hookimpl
def register_strategies(register: Register) -> None:
    register("auto", build_auto, description="Pick ddp under torchrun, else cuda if a GPU exists, else cpu")
