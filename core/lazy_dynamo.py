"""Optimizers that leave torch._dynamo unimported until something compiles.

torch.optim wraps ``Optimizer.add_param_group``, ``zero_grad``, ``state_dict`` and
``load_state_dict`` in a guard that keeps torch.compile from tracing them, and the ``step`` of
SGD, Adam, AdamW and others in a wrapper that sets the grad mode and marks graph breaks for it.
Both import torch._dynamo at their first call: 1.2-1.5 s on a 2-core CPU (sympy and part of the
compiler come with it), paid by every run that builds an optimizer, compiled or not. While
torch._dynamo is not imported nothing can be compiling, so there is nothing to guard against:
blitz's optimizers call those methods unwrapped until then, and through torch's wrappers once it
is loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import CodeType
from typing import Any

import torch
from torch.optim import optimizer as torch_optimizer

_Optimizer = torch.optim.Optimizer


def dynamo_loaded() -> bool:
    """Whether torch._dynamo has been imported (by torch.compile, or anything else)."""
    return "torch._dynamo" in sys.modules


def _step_wrapper_code() -> CodeType | None:
    """The code of torch's ``_use_grad`` step wrapper (one code object for all its closures)."""
    decorate = getattr(torch_optimizer, "_use_grad_for_differentiable", None)
    return getattr(decorate(lambda *args: None), "__code__", None) if callable(decorate) else None


_STEP_WRAPPER = _step_wrapper_code()


def _call(name: str, optimizer: _Optimizer, *args: Any) -> Any:
    """The next class's ``name`` after LazyDynamoOptimizer in the optimizer's MRO (a subclass of
    torch's may override it), unwrapped only where it is torch's own guarded method."""
    method = getattr(super(LazyDynamoOptimizer, optimizer), name)
    guarded = getattr(_Optimizer, name)
    if not dynamo_loaded() and getattr(method, "__func__", None) is guarded:
        return getattr(guarded, "__wrapped__", guarded)(optimizer, *args)  # the method inside the guard
    return method(*args)


class LazyDynamoOptimizer(_Optimizer):
    """A base (before ``torch.optim.Optimizer`` or a subclass of it) whose guarded methods skip
    the guard's import of torch._dynamo while it is not loaded; otherwise they are
    ``torch.optim.Optimizer``'s own."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _call("add_param_group", self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _call("zero_grad", self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return _call("state_dict", self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _call("load_state_dict", self, state_dict)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """The next class's ``step`` (SGD's, Adam's...); inside torch's ``_use_grad`` wrapper only
        once torch._dynamo is loaded. Until then it runs as that wrapper would, minus the graph
        breaks: with grad mode set to the optimizer's ``differentiable``."""
        step = super().step  # type: ignore[misc]
        func = getattr(step, "__func__", None)
        if func is None:
            return step(closure)
        if getattr(func, "hooked", False):  # torch's hook runner, put on the parent class by an
            func = func.__wrapped__  # instance of it: this class's own has run the hooks already
        if not dynamo_loaded() and getattr(func, "__code__", None) is _STEP_WRAPPER is not None:
            with torch.set_grad_enabled(self.defaults.get("differentiable", False)):
                return func.__wrapped__(self, closure)
        return func(self, closure)
