"""Muon: momentum orthogonalized by Newton-Schulz (Jordan et al., 2024), with SGD for the rest.

Muon updates a weight matrix (a conv filter bank seen as ``out x (in * kh * kw)``) with its
Nesterov momentum made (approximately) orthogonal: every singular value of the update set near 1,
so each step moves all directions of the matrix by about as much, instead of mostly the few that
dominate the gradient. The orthogonalization is a few steps of a quintic Newton-Schulz iteration
on the momentum itself (no SVD), whose coefficients are chosen for speed rather than exact
convergence: the singular values end up between about 0.5 and 1.5, which trains as well as exact
orthogonalization. It is the optimizer of the CIFAR-10 speed record airbench94_muon and of the
modded-nanoGPT records.

Muon is for the hidden weight matrices only. Scalars and vectors (biases, normalization
parameters) and the classifier head train with Nesterov SGD here, in the same optimizer: each
parameter group says which it is (``use_muon``), so one optimizer object serves blitz's engine,
schedules (which scale every group's lr) and checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from blitz import Register, hookimpl
from blitz.lazy_dynamo import LazyDynamoOptimizer
from blitz.options import check_option

# The quintic iteration's coefficients: X <- a X + (b A + c A^2) X with A = X X^T. Chosen to
# maximize the slope at zero (small singular values grow fast), at the price of not converging
# exactly to 1 (Jordan, "Muon: An optimizer for hidden layers in neural networks", 2024).
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NEWTON_SCHULZ_EPS = 1e-7  # keeps an all-zero update finite


def orthogonalize(updates: torch.Tensor, steps: int = 5, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximately orthogonalize each matrix of ``updates`` (..., rows, cols) by Newton-Schulz.

    Returns ``U S' V^T`` where ``U S V^T`` is the SVD of each matrix and ``S'`` has entries near 1.
    Scale-invariant. ``dtype`` is the arithmetic's (bf16 on GPUs, as in the reference: the
    iteration is robust to its rounding); the result comes back in ``updates``' dtype.
    """
    if updates.dim() < 2:
        raise ValueError(f"orthogonalize needs matrices (..., rows, cols), got shape {tuple(updates.shape)}")
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    rows, cols = updates.shape[-2:]
    # Autocast off: the iteration runs in ``dtype`` whatever the caller's context.
    with torch.autocast(updates.device.type, enabled=False):
        x = updates.reshape(-1, rows, cols).to(dtype or updates.dtype)
        if rows > cols:  # iterate on the smaller Gram matrix X X^T
            x = x.mT
        # Frobenius norm >= the largest singular value: after this every singular value is <= 1,
        # inside the iteration's basin.
        x = x / (torch.linalg.matrix_norm(x, keepdim=True) + NEWTON_SCHULZ_EPS)
        for _ in range(steps):  # three kernels per step: X X^T, b A + c A A, a X + (...) X
            gram = torch.bmm(x, x.mT)
            x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
        if rows > cols:
            x = x.mT
    return x.reshape(updates.shape).to(updates.dtype)


class Muon(LazyDynamoOptimizer):
    """Muon for the groups with ``use_muon=True``, Nesterov SGD for the others.

    Muon groups (parameters of two or more dimensions): per step, ``buf = momentum * buf + grad``;
    the update is ``grad + momentum * buf`` (Nesterov) or ``buf``, flattened to
    ``(shape[0], -1)``, orthogonalized (``ns_steps`` Newton-Schulz steps in ``ns_dtype``) and
    applied as ``p -= lr * update``. ``weight_decay`` there is decoupled (``p *= 1 - lr * wd``).
    ``normalize_weights=True`` first rescales each weight to Frobenius norm ``sqrt(shape[0])``
    (airbench94_muon does: with BatchNorm after every conv only the direction matters, and a
    fixed norm keeps the effective step size fixed).

    SGD groups: exactly ``torch.optim.SGD`` with dampening 0 (coupled weight decay, momentum
    buffer starting at the first gradient), written with foreach ops.

    A group may carry other keys (blitz's schedules read ``schedule_span``); they are kept.
    """

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        *,
        lr: float,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
        ns_dtype: torch.dtype | None = None,
        normalize_weights: bool = False,
    ) -> None:
        defaults = {
            "lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay,
            "ns_steps": ns_steps, "normalize_weights": normalize_weights, "use_muon": True,
        }
        super().__init__(params, defaults)
        # The arithmetic's dtype belongs to the device the run is on, not in the saved state: a
        # checkpoint from a GPU resumed on a CPU must not bring bf16 along.
        self.ns_dtype = ns_dtype
        for i, group in enumerate(self.param_groups):
            steps = group["ns_steps"]
            if isinstance(steps, bool) or not isinstance(steps, int):
                raise ValueError(f"Muon parameter group {i}: ns_steps must be a whole number, got {steps!r}")
            if group["lr"] < 0 or not 0 <= group["momentum"] < 1 or group["weight_decay"] < 0 or steps < 1:
                raise ValueError(
                    f"Muon parameter group {i}: needs lr >= 0, 0 <= momentum < 1, weight_decay >= 0 and "
                    f"ns_steps >= 1; got lr={group['lr']}, momentum={group['momentum']}, "
                    f"weight_decay={group['weight_decay']}, ns_steps={group['ns_steps']}"
                )
            flat = [tuple(p.shape) for p in group["params"] if p.dim() < 2] if group["use_muon"] else []
            if flat:
                raise ValueError(
                    f"Muon parameter group {i} holds parameters of shape {flat}: Muon updates matrices; put "
                    "vectors in a group with use_muon=False (build_muon sorts them)"
                )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group["use_muon"]:
                self._muon_step(group, params)
            else:
                self._sgd_step(group, params)
        return loss

    def _momentum(self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Update the momentum buffers (created as the first gradient, as SGD does) and return the
        direction to step in: Nesterov's ``grad + momentum * buf``, or ``buf``."""
        momentum = group["momentum"]
        if momentum == 0:
            return grads
        states = [self.state[p] for p in params]
        if any("momentum_buffer" not in s for s in states):
            for state, grad in zip(states, grads):
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(grad)
        else:
            buffers = [s["momentum_buffer"] for s in states]
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, grads)
        buffers = [s["momentum_buffer"] for s in states]
        return torch._foreach_add(grads, buffers, alpha=momentum) if group["nesterov"] else buffers

    def _sgd_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params]
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        torch._foreach_add_(params, self._momentum(group, params, grads), alpha=-group["lr"])

    def _muon_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        lr = group["lr"]
        directions = self._momentum(group, params, [p.grad for p in params])
        if group["normalize_weights"]:  # each weight to norm sqrt(rows), without a host sync
            scales = torch._foreach_reciprocal(torch._foreach_norm(params))
            torch._foreach_mul_(scales, [math.sqrt(p.shape[0]) for p in params])
            for p, scale in zip(params, scales):  # shapes differ: foreach would loop the same way
                p.mul_(scale)
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        # Matrices of one shape are orthogonalized together: one batched iteration instead of one
        # per parameter (on a GPU each is a dozen small kernel launches).
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(params):
            by_shape.setdefault(tuple(p.shape), []).append(i)
        dtype = self.ns_dtype
        for shape, indices in by_shape.items():
            stacked = torch.stack([directions[i].reshape(shape[0], -1).to(dtype or directions[i].dtype) for i in indices])
            updates = orthogonalize(stacked, group["ns_steps"], dtype).to(params[indices[0]].dtype)
            torch._foreach_add_([params[i] for i in indices], [u.view(shape) for u in updates.unbind()], alpha=-lr)


def default_ns_dtype(model: nn.Module) -> torch.dtype | None:
    """bf16 for the Newton-Schulz iteration on GPUs that have it, whatever ``--precision`` says (as
    the reference: the iteration is robust to its rounding, and it runs on tensor cores), the
    parameters' own dtype elsewhere (CPUs without bf16 units would only lose time)."""
    params = list(model.parameters())
    on_gpu = bool(params) and params[0].device.type == "cuda"
    # Emulated bf16 (pre-Ampere GPUs) would only be slower than the parameters' own dtype.
    return torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported(including_emulation=False) else None


def classifier_head(model: nn.Module) -> nn.Module | None:
    """The model's output layer: timm's ``get_classifier()`` where it exists, else its last Linear."""
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        head = get_classifier()
        if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
            return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def build_muon(
    model: nn.Module,
    *,
    lr: float,
    momentum: float = 0.95,
    weight_decay: float = 0.0,
    nesterov: bool = True,
    ns_steps: int = 5,
    aux_lr: float | None = None,
    aux_momentum: float = 0.9,
    aux_weight_decay: float = 0.0,
) -> Muon:
    """Muon for the hidden weight matrices and conv filters; Nesterov SGD for everything else.

    blitz always passes ``--lr`` and ``--momentum``. Where no recipe, config or flag sets them,
    they are Muon's usual 0.02 and 0.95 (registered below), not blitz's SGD defaults (0.001, 0.9).

    :param lr: Muon's step: each step moves a weight matrix by about ``lr`` per unit singular value.
    :param momentum: Muon's momentum (Nesterov unless ``nesterov=False``).
    :param weight_decay: Muon groups' decoupled weight decay.
    :param ns_steps: Newton-Schulz steps per update.
    :param aux_lr: SGD's learning rate for biases, normalization parameters and the classifier
        head (default: ``lr``).
    :param aux_momentum: SGD's (Nesterov) momentum.
    :param aux_weight_decay: SGD's (coupled) weight decay.
    """
    check_option("ns_steps", ns_steps, 1, whole=True)
    check_option("aux_momentum", aux_momentum, 0, 1)
    check_option("aux_weight_decay", aux_weight_decay, 0)
    if aux_lr is not None:
        check_option("aux_lr", aux_lr, 0)
    head = classifier_head(model)
    # Not Muon's: the head, embedding tables, and tensors that are vectors in disguise (a ViT's
    # (1, 1, D) class token: "orthogonalizing" one row only normalizes its length).
    excluded = {id(p) for p in head.parameters()} if head is not None else set()
    excluded |= {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    matrices, others = [], []
    for p in model.parameters():
        if p.requires_grad:
            is_matrix = p.dim() >= 2 and min(p.shape[0], p.numel() // max(p.shape[0], 1)) > 1 and id(p) not in excluded
            (matrices if is_matrix else others).append(p)
    if not matrices:
        raise ValueError(
            "muon: the model has no hidden weight matrices to orthogonalize (only biases, norms or a "
            "head); use --optimizer sgd or adamw"
        )
    groups: list[dict[str, Any]] = [{"params": matrices, "use_muon": True}]
    if others:
        groups.append({
            "params": others, "use_muon": False, "lr": lr if aux_lr is None else aux_lr,
            "momentum": aux_momentum, "nesterov": aux_momentum > 0, "weight_decay": aux_weight_decay,
        })
    return Muon(
        groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=weight_decay,
        ns_steps=ns_steps, ns_dtype=default_ns_dtype(model),
    )


@hookimpl
def register_optimizers(register: Register) -> None:
    register(
        "muon", build_muon,
        description="Muon (Jordan 2024): Nesterov momentum orthogonalized by Newton-Schulz for weight "
        "matrices and conv filters; Nesterov SGD for biases, norms and the head",
        hyperparameters={"lr": 0.02, "momentum": 0.95, "weight_decay": 0.0},  # see fill_optimizer_hyperparameters
    )
