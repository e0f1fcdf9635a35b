"""The ``dataparallel`` strategy: ``nn.DataParallel`` over all visible GPUs, as in the tutorial.

One process drives every GPU with threads: simple and notebook-friendly, but PyTorch
recommends DDP (``--strategy ddp``) for speed and for more than one machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from blitz import Register, hookimpl
from blitz.errors import StrategyUnavailableError
from blitz.plugins.strategy_cuda import CUDAStrategy


class AutocastReplica:
    """A replica of the model run in autocast with the caller's dtype, inside DataParallel's thread.

    Autocast's state is per thread, and ``parallel_apply`` gives each replica's thread only
    "autocast on or off": the dtype falls back to the device's default, fp16 on CUDA, so a bf16
    run would silently compute in fp16, with no gradient scaler to catch its underflows.
    """

    def __init__(self, replica: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        self.replica, self.device_type, self.dtype = replica, device_type, dtype

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.replica(*args, **kwargs)


class AutocastDataParallel(nn.DataParallel):
    """``nn.DataParallel`` whose replicas autocast to the dtype the caller autocasts to."""

    def parallel_apply(self, replicas: Sequence[Any], inputs: Sequence[Any], kwargs: Any) -> list[Any]:
        device_type = self.src_device_obj.type
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            replicas = [AutocastReplica(replica, device_type, dtype) for replica in replicas]
        return super().parallel_apply(replicas, inputs, kwargs)


class DataParallelStrategy(CUDAStrategy):
    name = "dataparallel"

    def __init__(self) -> None:
        super().__init__("cuda:0")
        self.gpus = torch.cuda.device_count()

    def wrap(self, model: nn.Module) -> nn.Module:
        return AutocastDataParallel(model) if self.gpus > 1 else model

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
