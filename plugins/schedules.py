"""Learning-rate schedules, stepped once per optimizer step.

``linear`` and ``cosine`` honour a parameter group's ``schedule_span`` (a fraction, default 1):
that group runs the whole schedule within the first ``schedule_span`` of the steps and then stays
at its final value (airbench94_muon's whitening bias decays to 0 over the first 3 of 8 epochs).
A group that also sets ``freeze_when_done`` and ends at lr 0 stops computing gradients then
(``parameters_done_at``; see ``blitz.freezing``).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from blitz import Register, hookimpl
from blitz.options import check_fraction, check_option


class _WarmupDecay:
    """One parameter group's learning-rate multiplier: linear warm-up, then the schedule's decay
    to ``final``. An object, not a closure: LambdaLR saves its attributes in its state."""

    def __init__(self, kind: str, total_steps: int, warmup: float, final: float) -> None:
        check_option("warmup", warmup, 0)  # a fraction of the steps below 1, else a step count
        if warmup >= 1 and warmup != int(warmup):  # 1.5 would quietly be one step
            raise ValueError(f"warmup must be a fraction of the steps below 1 or a whole number of steps, got {warmup}")
        check_fraction("final", final, zero_allowed=True)  # a multiplier of lr: below 0 would train uphill
        self.kind, self.total, self.final = kind, max(total_steps, 1), final
        self.warmup_steps = int(warmup * self.total) if warmup < 1 else int(warmup)

    def __call__(self, step: int) -> float:
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        if self.kind == "cosine":
            return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1 - (1 - self.final) * progress  # linear decay

    def zero_from(self) -> int | None:
        """The step from which the multiplier is 0 for good (None if it never is)."""
        return max(self.total, self.warmup_steps + 1) if self.final == 0 else None


class PerGroupLR(LambdaLR):
    """LambdaLR with one ``_WarmupDecay`` multiplier per parameter group (each over its group's span)."""

    def parameters_done_at(self) -> dict[int, list[torch.Tensor]]:
        """{steps: parameters} for the groups that ask (``freeze_when_done``) and whose lr is 0
        from that many steps on: blitz stops computing their gradients there."""
        done: dict[int, list[torch.Tensor]] = {}
        for group, shape in zip(self.optimizer.param_groups, self.lr_lambdas):
            zero_from = shape.zero_from() if isinstance(shape, _WarmupDecay) else None
            if group.get("freeze_when_done") and zero_from is not None:
                done.setdefault(zero_from, []).extend(group["params"])
        return done


def _per_group(optimizer: torch.optim.Optimizer, kind: str, total_steps: int, warmup: float, final: float) -> list[_WarmupDecay]:
    """One multiplier per parameter group, each over its group's ``schedule_span`` of the steps."""
    shapes = []
    for i, group in enumerate(optimizer.param_groups):
        span = group.get("schedule_span", 1.0)
        if not 0 < span <= 1:
            raise ValueError(f"{_group_label(group, i)}: schedule_span must be in (0, 1], got {span}")
        shapes.append(_WarmupDecay(kind, max(round(span * total_steps), 1), warmup, final))
    if warmup >= 1 and warmup >= total_steps:
        warnings.warn(
            f"warmup={int(warmup)} steps is at least the run's {total_steps} steps: the learning rate never reaches "
            "its set value (a warmup below 1 is a fraction of the steps)", stacklevel=2,
        )
    return shapes


def refuse_spans(optimizer: torch.optim.Optimizer, schedule: str) -> None:
    """For schedules that run every group over the whole run: refuse a group asking otherwise."""
    for i, group in enumerate(optimizer.param_groups):
        span = group.get("schedule_span", 1.0)
        if span != 1.0:
            raise ValueError(
                f"schedule '{schedule}' runs every parameter group over the whole run, but the optimizer's "
                f"{_group_label(group, i)} is to finish within {span:g} of it (schedule_span); use "
                "--schedule linear or cosine"
            )


def _group_label(group: dict, index: int) -> str:
    """How a parameter group is named in messages: its "name" key where the optimizer gives one."""
    return f"'{group['name']}' group" if isinstance(group.get("name"), str) else f"parameter group {index}"


class ConstantSchedule(LRScheduler):
    """The learning rate as set; ``step`` only counts (it runs every step, so it is kept cheap)."""

    def get_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self, epoch: int | None = None) -> None:
        self.last_epoch += 1


def build_constant_schedule(optimizer: torch.optim.Optimizer, *, total_steps: int) -> LRScheduler:
    refuse_spans(optimizer, "constant")
    return ConstantSchedule(optimizer)


def build_cosine_schedule(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup: float = 0.0, final: float = 0.0) -> LRScheduler:
    """Cosine decay to ``final`` x lr after ``warmup`` (a fraction of all steps, or a step count)."""
    return PerGroupLR(optimizer, _per_group(optimizer, "cosine", total_steps, warmup, final))


def build_linear_schedule(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup: float = 0.2, final: float = 0.0) -> LRScheduler:
    """Linear warm-up for ``warmup`` of the steps, then linear decay to ``final`` x lr."""
    return PerGroupLR(optimizer, _per_group(optimizer, "linear", total_steps, warmup, final))


class _OneCycle:
    """Smith's one-cycle as a multiplier of lr: cosine up from 1/div_factor to 1, then cosine down
    to 1/(div_factor * final_div_factor). Written out (not OneCycleLR) so that it also works for
    runs of a handful of steps, and so that its state is plain numbers."""

    def __init__(self, total_steps: int, pct_start: float, div_factor: float, final_div_factor: float) -> None:
        check_option("pct_start", pct_start, 0, 1)
        if pct_start == 0:
            raise ValueError("pct_start must be between 0 and 1, got 0")
        check_option("div_factor", div_factor, 1)
        check_option("final_div_factor", final_div_factor, 1)
        self.total = max(total_steps, 1)
        self.up = max(pct_start * self.total, 1.0)
        self.start, self.end = 1 / div_factor, 1 / (div_factor * final_div_factor)

    def __call__(self, step: int) -> float:
        def cosine(a: float, b: float, fraction: float) -> float:
            return b + (a - b) * 0.5 * (1 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))

        if step < self.up:
            return cosine(self.start, 1.0, step / self.up)
        return cosine(1.0, self.end, (step - self.up) / max(self.total - self.up, 1.0))


def build_onecycle_schedule(
    optimizer: torch.optim.Optimizer, *, total_steps: int, pct_start: float = 0.25,
    div_factor: float = 25.0, final_div_factor: float = 1e4,
) -> LRScheduler:
    """One-cycle: up from lr/div_factor to lr over ``pct_start`` of the steps, then down."""
    refuse_spans(optimizer, "onecycle")
    return LambdaLR(optimizer, _OneCycle(total_steps, pct_start, div_factor, final_div_factor))


@hookimpl
def register_schedules(register: Register) -> None:
    register("constant", build_constant_schedule, description="The same learning rate throughout")
    register("cosine", build_cosine_schedule, description="Cosine decay, with optional linear warm-up")
    register("linear", build_linear_schedule, description="Linear warm-up, then linear decay (a triangle)")
    register("onecycle", build_onecycle_schedule, description="One-cycle policy (Smith), without momentum cycling")
