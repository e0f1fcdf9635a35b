"""Parameters whose training ends before the run does stop costing gradients from then on.

A schedule may say which parameters' learning rate stays 0 from some step to the end of the run
(``parameters_done_at()``; airbench's whitening-layer bias trains for only the first few
epochs). From that step blitz turns their ``requires_grad`` off, so autograd no longer computes
their gradients, nor anything that only they needed. The weights train the same (an optimizer
step with lr 0 moves nothing); the backward pass is shorter. airbench does the same by detaching
its whitening bias: that spares the first conv layer's input-gradient pass, ~3 % of
airbench94_muon's training time on a GPU.

Not under ``--compile`` (flipping ``requires_grad`` would make torch.compile compile the graph
again mid-run, inside the timed training) nor inside DistributedDataParallel (its reducer waits
for every gradient it was built with). ``requires_grad`` is put back when training ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from blitz.errors import PluginError


class GradientFreezer:
    """Turns parameters' gradients off at the steps a schedule names, and back on at the end."""

    def __init__(self, points: dict[int, list[torch.Tensor]] | None = None) -> None:
        self.points = dict(points or {})  # step count -> the parameters done after that many steps
        self.frozen: list[torch.Tensor] = []

    @classmethod
    def for_schedule(cls, scheduler: Any, schedule_name: str, enabled: bool = True) -> GradientFreezer:
        """The freezer for a schedule's ``parameters_done_at()`` (empty if it has none or not
        ``enabled``)."""
        done_at: Callable[[], Any] | None = getattr(scheduler, "parameters_done_at", None)
        if not enabled or not callable(done_at):
            return cls()
        points = done_at()
        if not isinstance(points, dict) or not all(
            isinstance(step, int) and not isinstance(step, bool) and step >= 0
            and isinstance(params, (list, tuple)) and all(isinstance(p, torch.Tensor) for p in params)
            for step, params in points.items()
        ):
            raise PluginError(
                f"Schedule '{schedule_name}': parameters_done_at() must return a dict of step counts (whole "
                f"numbers >= 0) to lists of parameters, got {type(points).__name__}; fix the schedule plugin."
            )
        return cls({step: list(params) for step, params in points.items() if params})

    def __bool__(self) -> bool:
        return bool(self.points)

    def after_step(self, steps_done: int) -> None:
        """Called after every optimizer step with the run's step count (a dict lookup)."""
        params = self.points.get(steps_done)
        if params:
            self._freeze(params)

    def catch_up(self, steps_done: int) -> None:
        """A resumed run: freeze what an uninterrupted run would have frozen by now."""
        for step, params in self.points.items():
            if step <= steps_done:
                self._freeze(params)

    def restore(self) -> None:
        for p in self.frozen:
            p.requires_grad_(True)
        self.frozen.clear()

    def _freeze(self, params: list[torch.Tensor]) -> None:
        for p in params:
            if p.requires_grad:
                p.requires_grad_(False)
                p.grad = None
                self.frozen.append(p)


def can_freeze(train_model: nn.Module, compiled: bool) -> bool:
    """Whether gradients may be turned off mid-run for this (wrapped, not yet compiled) model."""
    return not compiled and not isinstance(train_model, nn.parallel.DistributedDataParallel)
