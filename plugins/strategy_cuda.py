"""The ``cuda`` strategy: one process on one GPU (``--device cuda:N``), as the tutorial's ``.to(device)``."""

from __future__ import annotations

import torch

from blitz import Register, Strategy, hookimpl
from blitz.errors import StrategyUnavailableError


class CUDAStrategy(Strategy):
    name = "cuda"

    def setup(self) -> None:
        use_gpu(self.device)

    def describe(self) -> str:
        return f"cuda on {self.device} ({torch.cuda.get_device_name(self.device)})"


def use_gpu(device: torch.device) -> None:
    """Make ``device`` this process's GPU, with TF32 matmuls and convolutions: the accuracy cost
    is negligible for classifiers and the speed-up large."""
    torch.cuda.set_device(device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def cuda_device(device: str | None) -> torch.device:
    """A validated CUDA device; StrategyUnavailableError where there is none."""
    if not torch.cuda.is_available():
        raise StrategyUnavailableError("No CUDA GPU is available here; use --strategy cpu.")
    try:
        dev = torch.device(device or "cuda:0")
    except RuntimeError:
        raise StrategyUnavailableError(f"--device '{device}' is not a device name; use e.g. cuda:0.") from None
    if dev.type != "cuda":
        raise StrategyUnavailableError(f"--device '{device}' is not a CUDA device; use e.g. cuda:0.")
    index = dev.index or 0
    if index >= torch.cuda.device_count():
        raise StrategyUnavailableError(
            f"--device {dev} does not exist: this machine has {torch.cuda.device_count()} GPU(s), cuda:0..cuda:{torch.cuda.device_count() - 1}."
        )
    return torch.device("cuda", index)


def build_cuda(*, device: str | None = None) -> CUDAStrategy:
    return CUDAStrategy(cuda_device(device))


@hookimpl
def register_strategies(register: Register) -> None:
    register("cuda", build_cuda, description="One process on one GPU (--device cuda:N)")
