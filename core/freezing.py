"""Parameters whose training ends before the run does stop costing gradients from then on.

A schedule may say which parameters' learning rate stays 0 from some step to the end of the run
(``parameters_done_at()``; airbench's whitening-layer bias trains for only the first few
epochs). From that step blitz turns their ``requires_grad`` off, so autograd no longer computes
their gradients, nor anything that only they needed. The weights train the same (an optimizer
step with lr 0 moves nothing); the backward pass is shorter. airbench does the same by detaching
its whitening bias: that spares the first conv layer's input-gradient pass, ~3 % of
airbench94_muon's training time on a GPU.

Only for a model trained as it is or through DataParallel: not under ``--compile`` (flipping
``requires_grad`` would make torch.compile compile the graph again mid-run, inside the timed
training), not under ``--cuda-graphs`` (a captured backward computes the gradients it was
captured with), not inside DistributedDataParallel or another wrapper (DDP's reducer waits for every
gradient it was built with), and not with a gradient scaler (16-mixed: a step it skips is not
an optimizer step, and a frozen gradient would leave its overflow check). ``requires_grad`` is
put back when training ends.

What a schedule promises with a step count: from then on the optimizer leaves those parameters
as they are (an lr of 0 does for SGD-style updates; not for Muon's weight normalization) and
nothing else reads their gradients.
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
        if not isinstance(points, dict):
            raise PluginError(
                f"Schedule '{schedule_name}': parameters_done_at() must return a dict of step counts to lists "
                f"of parameters, got {type(points).__name__}; fix the schedule plugin."
            )
        for step, params in points.items():
            if isinstance(step, bool) or not isinstance(step, int) or step < 0 or not isinstance(params, (list, tuple)) \
                    or not all(isinstance(p, torch.Tensor) and p.is_leaf for p in params):
                raise PluginError(
                    f"Schedule '{schedule_name}': parameters_done_at() gave {step!r}: "
                    f"{type(params).__name__}; it must map step counts (whole numbers >= 0) to lists of "
                    "parameters (leaf tensors); fix the schedule plugin."
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
        """Turn back on what this freezer turned off."""
        for p in self.frozen:
            p.requires_grad_(True)
        self.frozen.clear()

    def _freeze(self, params: list[torch.Tensor]) -> None:
        for p in params:
            if p.requires_grad:
                p.requires_grad_(False)
                p.grad = None
                self.frozen.append(p)


def can_freeze(train_model: nn.Module, model: nn.Module, *, compiled: bool, scaled: bool, graphed: bool = False) -> bool:
    """Whether gradients may be turned off mid-run for ``model`` as its strategy wrapped it
    (``train_model``, before any compilation): see the module's docstring."""
    plain = train_model is model or isinstance(train_model, nn.DataParallel)  # its replicas follow
    return plain and not compiled and not scaled and not graphed
