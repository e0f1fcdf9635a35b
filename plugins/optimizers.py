"""SGD (with momentum, Nesterov, weight decay), Adam and AdamW.

Fused kernels are used where PyTorch has them for the parameters' device: one kernel per step
instead of one per parameter tensor.
"""

from __future__ import annotations

import torch
from torch import nn

from blitz import hookimpl


def _fused_ok(model: nn.Module) -> bool:
    params = list(model.parameters())
    return bool(params) and all(p.device.type in ("cuda", "cpu") and p.dtype.is_floating_point for p in params)


def _fused(model: nn.Module, fused: bool | None) -> dict[str, bool]:
    # Fused SGD/Adam exist for CPU and CUDA parameters in recent PyTorch; the model is on its
    # device before the optimizer is built, so this picks the right kernel.
    use = _fused_ok(model) if fused is None else fused
    return {"fused": True} if use else {}


def build_sgd(
    model: nn.Module, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
    nesterov: bool = False, fused: bool | None = None,
) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
        nesterov=nesterov and momentum > 0, **_fused(model, fused),
    )


def build_adam(
    model: nn.Module, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
    beta2: float = 0.999, eps: float = 1e-8, fused: bool | None = None,
) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        model.parameters(), lr=lr, betas=(momentum, beta2), eps=eps, weight_decay=weight_decay,
        **_fused(model, fused),
    )


def build_adamw(
    model: nn.Module, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.01,
    beta2: float = 0.999, eps: float = 1e-8, fused: bool | None = None,
) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        model.parameters(), lr=lr, betas=(momentum, beta2), eps=eps, weight_decay=weight_decay,
        **_fused(model, fused),
    )


@hookimpl
def register_optimizers(register):
    register("sgd", build_sgd, description="Stochastic gradient descent with momentum, optional Nesterov and weight decay")
    register("adam", build_adam, description="Adam; --momentum sets beta1")
    register("adamw", build_adamw, description="AdamW (decoupled weight decay); --momentum sets beta1")
