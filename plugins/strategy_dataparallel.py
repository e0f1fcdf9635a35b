"""The ``dataparallel`` strategy: ``nn.DataParallel`` over all visible GPUs, as in the tutorial.

One process drives every GPU with threads: simple and notebook-friendly, but PyTorch
recommends DDP (``--strategy ddp``) for speed and for more than one machine.
"""

from __future__ import annotations

import torch
from torch import nn

from blitz import Register, hookimpl
from blitz.errors import StrategyUnavailableError
from blitz.plugins.strategy_cuda import CUDAStrategy


class DataParallelStrategy(CUDAStrategy):
    name = "dataparallel"

    def __init__(self) -> None:
        super().__init__("cuda:0")
        self.gpus = torch.cuda.device_count()

    def wrap(self, model: nn.Module) -> nn.Module:
        return nn.DataParallel(model) if self.gpus > 1 else model

    def describe(self) -> str:
        if self.gpus > 1:
            return f"dataparallel over {self.gpus} GPUs (nn.DataParallel)"
        return "dataparallel with one GPU: running as plain cuda on cuda:0 (DataParallel needs 2+ GPUs to split batches)"


def build_dataparallel(*, device: str | None = None) -> DataParallelStrategy:
    if not torch.cuda.is_available():
        raise StrategyUnavailableError(
            "--strategy dataparallel needs at least one CUDA GPU and none is available; "
            "use --strategy cpu (or cuda on a GPU machine)."
        )
    if device is not None:
        raise StrategyUnavailableError("dataparallel uses every visible GPU; limit them with CUDA_VISIBLE_DEVICES, not --device.")
    return DataParallelStrategy()


@hookimpl
def register_strategies(register: Register) -> None:
    register("dataparallel", build_dataparallel, description="nn.DataParallel over all visible GPUs (one process, threads)")
