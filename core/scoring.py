"""Scoring a model on a split: loss, accuracy and confusion, each example counted exactly once,
also across the processes of a ddp job; and the precision context forward passes run in."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from blitz.batches import eval_batches
from blitz.components import DataInfo, Strategy, TensorSplit
from blitz.config import RunConfig


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    confusion: torch.Tensor  # (K, K) counts, rows = true class, columns = predicted
    count: int

    def per_class(self, class_names: tuple[str, ...]) -> dict[str, float | None]:
        """Each class's accuracy; None for a class with no test examples (not 0 %: nothing was scored)."""
        totals = self.confusion.sum(dim=1)
        correct = self.confusion.diagonal()
        return {
            # in Python: a tensor's division rounds to float32 (0.573 written as 0.5730000138282776)
            name: int(correct[i]) / int(totals[i]) if totals[i] else None for i, name in enumerate(class_names)
        }


def autocast(config: RunConfig, device: torch.device, cache: bool = True) -> contextlib.AbstractContextManager[Any]:
    """The run's autocast. ``cache=False`` casts the weights at every use instead of once per
    context, as a CUDA graph's capture needs (its replays must cast the current weights)."""
    if config.precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache)


def without_grad(model: nn.Module) -> contextlib.AbstractContextManager[Any]:
    """``inference_mode`` for forward passes, but ``no_grad`` for a DataParallel model.

    DataParallel runs each replica in a thread that is not in inference mode, where an in-place
    op on a tensor made under it (the scattered input, a replica's parameters) would fail.
    """
    inner = getattr(model, "_orig_mod", model)  # under torch.compile's wrapper (--compile)
    return torch.no_grad() if isinstance(inner, nn.DataParallel) else torch.inference_mode()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in evaluation mode inside (no dropout, BatchNorm's running statistics), and
    back in the mode it was in after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class EvaluationStopped(Exception):
    """A stop request arrived during an evaluation, which was abandoned."""


def evaluate(
    model: nn.Module,
    split: TensorSplit | Any,
    info: DataInfo,
    strategy: Strategy,
    config: RunConfig,
    memory_format: torch.memory_format = torch.contiguous_format,
    should_stop: Callable[[], bool] | None = None,
    source: str | None = None,
) -> EvalResult:
    """Loss, accuracy and confusion over the whole split, each example counted exactly once.

    ``should_stop`` is asked before each batch; when it says yes, EvaluationStopped is raised
    (one process only: ranks that left a collective early would leave the others waiting).
    ``source``: how a bad label names the data ("Dataset 'x' of plugin 'p'").
    """
    k = info.num_classes
    device = strategy.device
    cells: list[torch.Tensor] = []  # each example's confusion cell, true * k + predicted
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    with eval_mode(model), without_grad(model), autocast(config, device):
        for images, labels in eval_batches(
            split, info, device=device, batch_size=config.eval_batch_size,
            rank=strategy.rank, world_size=strategy.world_size, memory_format=memory_format,
            num_workers=config.num_workers, source=source or f"Dataset '{config.dataset}'",
        ):
            if should_stop is not None and should_stop():
                raise EvaluationStopped
            logits = model(images).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
            cells.append(labels * k + logits.argmax(dim=1))
    # Counted once, at the end: on a GPU bincount waits for the device (it sizes its output
    # from the data), which per batch would stall the evaluation's queue every time.
    codes = torch.cat(cells) if cells else torch.zeros(0, dtype=torch.long, device=device)
    confusion = strategy.all_reduce_sum(torch.bincount(codes, minlength=k * k))
    loss_sum = strategy.all_reduce_sum(loss_sum)
    matrix = confusion.view(k, k).cpu()
    count = int(matrix.sum())
    return EvalResult(
        loss=float(loss_sum) / max(count, 1),
        accuracy=float(matrix.diagonal().sum()) / max(count, 1),
        confusion=matrix,
        count=count,
    )
