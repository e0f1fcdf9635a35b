"""The ``ddp`` strategy: DistributedDataParallel, one process per device, started by torchrun.

``blitz run --strategy ddp --nproc-per-node N`` starts the processes itself through torchrun's
own launcher (see blitz.launch); ``torchrun ... -m blitz run --strategy ddp`` works as well, on
one machine or several (torchrun's rendezvous options). Backend nccl on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from blitz import Register, Strategy, UsageError, hookimpl
from blitz.errors import StrategyUnavailableError
from blitz.launch import check_ddp_device, ddp_timeout_seconds, launched_by_torchrun
from blitz.plugins.strategy_cuda import use_gpu


class DDPStrategy(Strategy):
    name = "ddp"

    def __init__(self, device: str | None = None) -> None:
        if not launched_by_torchrun():
            raise UsageError(
                "--strategy ddp runs under torchrun: use 'blitz run --strategy ddp --nproc-per-node N' "
                "(blitz starts torchrun for you) or 'torchrun --nproc-per-node N -m blitz run --strategy ddp'."
            )
        self.rank = int(os.environ["RANK"])
        self.local_rank = int(os.environ["LOCAL_RANK"])
        self.world_size = int(os.environ["WORLD_SIZE"])
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda and self.local_rank >= torch.cuda.device_count():
            gpus = torch.cuda.device_count()
            raise StrategyUnavailableError(
                f"ddp process {self.local_rank} on this machine has no GPU of its own ({gpus} visible): "
                f"start at most {gpus} per machine (--nproc-per-node {gpus}), or give --device cpu."
            )
        self.backend = "nccl" if use_cuda else "gloo"
        super().__init__(torch.device("cuda", self.local_rank) if use_cuda else torch.device("cpu"))

    def setup(self) -> None:
        if self.device.type == "cuda":
            use_gpu(self.device)
        if not dist.is_initialized():
            timeout = timedelta(seconds=ddp_timeout_seconds())
            dist.init_process_group(
                backend=self.backend,
                timeout=timeout,
                device_id=self.device if self.device.type == "cuda" else None,
            )

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.device.type == "cuda":
            return DistributedDataParallel(model, device_ids=[self.device.index])
        return DistributedDataParallel(model)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_object(self, obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def teardown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def describe(self) -> str:
        return f"ddp rank {self.rank}/{self.world_size} on {self.device} ({self.backend})"


def build_ddp(*, device: str | None = None) -> DDPStrategy:
    check_ddp_device(device)
    return DDPStrategy(device)


@hookimpl
def register_strategies(register: Register) -> None:
    register("ddp", build_ddp, description="DistributedDataParallel, one process per device (torchrun; nccl or gloo)")
