"""SGD (with momentum, Nesterov, weight decay), Adam and AdamW.

Fused kernels are used where PyTorch has them for the parameters' device: one kernel per step
instead of one per parameter tensor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from blitz import Register, hookimpl
from blitz.lazy_dynamo import LazyDynamoOptimizer
from blitz.options import check_flag, check_optional_flag
from blitz.optimizer_state import has_step_hooks


def _fused_ok(model: nn.Module) -> bool:
    params = list(model.parameters())
    return bool(params) and all(p.device.type in ("cuda", "cpu") and p.dtype.is_floating_point for p in params)


def _fused(model: nn.Module, fused: bool | None) -> dict[str, bool]:
    check_optional_flag("fused", fused)
    # Fused SGD/Adam exist for CPU and CUDA parameters in recent PyTorch; the model is on its
    # device before the optimizer is built, so this picks the right kernel.
    use = _fused_ok(model) if fused is None else fused
    return {"fused": True} if use else {}


class LeanSGD(LazyDynamoOptimizer, torch.optim.SGD):
    """``torch.optim.SGD`` that, in the common fused case, calls the fused kernel directly.

    At the tutorial's batch of 4 a step of LeNet takes about half a millisecond, and
    ``SGD.step``'s general path (grouping tensors by device and dtype, building state lists)
    costs as much as the kernel. When every parameter of a group has a dense gradient and a
    momentum buffer, and no gradient scaler is involved, this runs the same kernel with the same
    arguments; anything else goes through ``SGD.step``. The results are identical (tested), and
    state, hooks and checkpoints are those of ``torch.optim.SGD``.

    torch wraps every optimizer class's ``step`` to run step hooks inside a profiler range; the
    range alone costs ~5 us a step. ``step`` here runs that wrapper only when a hook is
    registered or a profiler is recording, so hooks and profiles are as with any optimizer.
    The short path takes the first step too (the fused kernel starts the momentum buffers as the
    gradients, as SGD's does) and skips parameters without a gradient (frozen, unused), as SGD
    does; with :class:`blitz.lazy_dynamo.LazyDynamoOptimizer` a run on it never imports
    torch._dynamo, as ``SGD.step`` does at its first call.
    """

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        # A subclass's own `step` is wrapped by torch as usual, and its hooks have run by the time
        # it calls this one: running them here too would run them twice.
        if type(self).step is LeanSGD.step and (
            has_step_hooks(self) or torch._C._autograd._profiler_enabled()
        ):
            return _hooked_step(self, closure)
        return self._step(closure)

    step.hooked = True  # type: ignore[attr-defined]  # torch's marker: do not wrap this step again

    def _step(self, closure: Callable[[], float] | None = None) -> float | None:
        if closure is not None or getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None:
            zero_missing_momentum_buffers(self)
            return self._general_step(closure)
        work = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]  # as SGD: no gradient, no update
            if not params:
                continue
            grads = [p.grad for p in params]
            buffers = [self.state[p].get("momentum_buffer") for p in params] if group["momentum"] else []
            first = bool(buffers) and all(b is None for b in buffers)
            if not (
                group["fused"] and not group["differentiable"] and not isinstance(group["lr"], torch.Tensor)
                and _same_kind(params, grads) and (first or all(b is not None for b in buffers))
            ):
                return self._general_step(closure)
            work.append((group, params, grads, buffers, first))
        with torch.no_grad():  # as SGD.step: the in-place update must not be recorded
            for group, params, grads, buffers, first in work:
                if first:  # as SGD's fused step: the kernel fills them with the first gradients
                    buffers = [torch.empty_like(g) for g in grads]
                    for p, buffer in zip(params, buffers):
                        self.state[p]["momentum_buffer"] = buffer
                torch._fused_sgd_(
                    params, grads, buffers, weight_decay=group["weight_decay"], momentum=group["momentum"],
                    lr=group["lr"], dampening=group["dampening"], nesterov=group["nesterov"],
                    maximize=group["maximize"], is_first_step=first, grad_scale=None, found_inf=None,
                )
        return None

    def _general_step(self, closure: Callable[[], float] | None) -> float | None:
        # SGD.step through LazyDynamoOptimizer's: without the hook-running wrapper torch.optim
        # puts around every optimizer class's step (this step already ran inside LeanSGD's, so
        # hooks would run twice), and without torch._dynamo's import while nothing compiles.
        loss = None
        if closure is not None:  # first: the gradients to lay out are the ones it makes
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:  # torch's fused SGD has the layout problem too (2.14)
            if not group["fused"]:
                continue
            for p in group["params"]:
                g = p.grad
                if g is not None and not g.is_sparse and g.shape == p.shape and g.stride() != p.stride():
                    p.grad = torch.empty_like(p).copy_(g)
        LazyDynamoOptimizer.step(self, None)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
        return None


_hooked_step = torch.optim.Optimizer.profile_hook_step(LeanSGD._step)


def zero_missing_momentum_buffers(optimizer: torch.optim.SGD) -> None:
    """Under a gradient scaler (fp16), start fused SGD's missing momentum buffers at zero.

    PyTorch's fused SGD (2.14) makes a first step's buffers with ``empty_like`` and fills them in
    its kernel, which skips the whole update when the scaler found inf/NaN gradients, as its
    first steps often do: the buffers then hold whatever the memory held, and training goes to
    NaN. With dampening 0, as in every blitz SGD, a zero buffer gives the same first step
    (momentum * 0 + gradient). Only where the scaler set ``found_inf``, before its step.
    """
    if getattr(optimizer, "found_inf", None) is None:
        return
    for group in optimizer.param_groups:
        if not (group.get("fused") and group["momentum"]) or group["dampening"]:
            continue
        for p in group["params"]:
            state = optimizer.state[p]
            if p.grad is not None and state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def _same_kind(params: list[torch.Tensor], grads: list[torch.Tensor | None]) -> bool:
    """Whether every parameter has a dense gradient, all on one device with one dtype, laid out
    in memory as the parameter (the fused kernel's terms: it walks both in memory order, so a
    contiguous gradient of a channels-last weight would update each weight with another's)."""
    device, dtype = params[0].device, params[0].dtype
    for p, g in zip(params, grads):
        if g is None or g.is_sparse or p.device != device or p.dtype != dtype or g.dtype != dtype:
            return False
        if not (p.is_contiguous() and g.is_contiguous()) and g.stride() != p.stride():
            return False
    return True


def build_sgd(
    model: nn.Module, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
    nesterov: bool = False, fused: bool | None = None,
) -> torch.optim.Optimizer:
    check_flag("nesterov", nesterov)  # fused SGD takes only a bool, and would fail at the first step
    return LeanSGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
        nesterov=nesterov and momentum > 0, **_fused(model, fused),
    )


class LazyAdam(LazyDynamoOptimizer, torch.optim.Adam):
    """``torch.optim.Adam``, without its import of torch._dynamo (1.2-1.5 s) until something compiles."""


class LazyAdamW(LazyDynamoOptimizer, torch.optim.AdamW):
    """``torch.optim.AdamW``, without its import of torch._dynamo until something compiles."""


def build_adam(
    model: nn.Module, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
    beta2: float = 0.999, eps: float = 1e-8, fused: bool | None = None,
) -> torch.optim.Optimizer:
    return LazyAdam(
        model.parameters(), lr=lr, betas=(momentum, beta2), eps=eps, weight_decay=weight_decay,
        **_fused(model, fused),
    )


def build_adamw(
    model: nn.Module, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.01,
    beta2: float = 0.999, eps: float = 1e-8, fused: bool | None = None,
) -> torch.optim.Optimizer:
    return LazyAdamW(
        model.parameters(), lr=lr, betas=(momentum, beta2), eps=eps, weight_decay=weight_decay,
        **_fused(model, fused),
    )


@hookimpl
def register_optimizers(register: Register) -> None:
    # Each optimizer's own lr, momentum and weight decay: where no layer set them, or a layer set
    # them together with another optimizer (see blitz.resolve.fill_optimizer_hyperparameters).
    register(
        "sgd", build_sgd, description="Stochastic gradient descent with momentum, optional Nesterov and weight decay",
        hyperparameters={"lr": 0.001, "momentum": 0.9, "weight_decay": 0.0},  # the tutorial's
    )
    register(
        "adam", build_adam, description="Adam; --momentum sets beta1",
        hyperparameters={"lr": 0.001, "momentum": 0.9, "weight_decay": 0.0},  # torch.optim.Adam's
    )
    register(
        "adamw", build_adamw, description="AdamW (decoupled weight decay); --momentum sets beta1",
        hyperparameters={"lr": 0.001, "momentum": 0.9, "weight_decay": 0.01},  # torch.optim.AdamW's
    )
