"""Optimizers that leave torch._dynamo unimported until something compiles.

torch.optim wraps ``Optimizer.add_param_group``, ``zero_grad``, ``state_dict`` and
``load_state_dict`` in a guard that keeps torch.compile from tracing them, and the guard imports
torch._dynamo at its first call: 1.2-1.5 s on a 2-core CPU (sympy and part of the compiler come
with it), paid by every run that builds an optimizer, compiled or not. While torch._dynamo is not
imported nothing can be compiling, so the guard has nothing to guard against: blitz's optimizers
call those methods unwrapped until then, and through torch's guard once it is loaded.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

_Optimizer = torch.optim.Optimizer


def dynamo_loaded() -> bool:
    """Whether torch._dynamo has been imported (by torch.compile, or anything else)."""
    return "torch._dynamo" in sys.modules


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
