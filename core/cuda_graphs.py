"""``--cuda-graphs``: a model's training forward and backward replayed as CUDA graphs, eagerly.

A small network at a large batch still waits on kernel launches: each step's few hundred
kernels are launched one by one from Python. A CUDA graph records them once and replays them
with one launch. On an H100, torch.compile's ``reduce-overhead`` mode (which does this for
compiled code) trained airbench94_muon ~19 % faster than eager, but its compilation costs 6-25 s
of warm-up per run; this captures the eager model's own kernels instead, in well under a second.

PyTorch's ``torch.cuda.make_graphed_callables`` does the capture: it runs the model a few times
on a sample batch, records one forward and one backward graph, and wraps them in an autograd
function, so the loss, the optimizer and the augmentation stay eager around it. A graph holds
fixed addresses and shapes, so the capture is used only for training batches of the shape it
was captured with; a last, smaller batch, evaluation and grad-free calls run the model as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Capture = Callable[..., Any]  # torch.cuda.make_graphed_callables, or a stand-in in tests


def cuda_graphs_problem(device: torch.device, *, compiled: bool, wrapper: str | None) -> str | None:
    """Why ``--cuda-graphs`` cannot be used for this run, or None if it can. ``wrapper``: the
    class the strategy wrapped the model in (DataParallel over several GPUs, DDP), if any."""
    if device.type != "cuda":
        return f"the run is on {device.type}, and CUDA graphs need a CUDA GPU"
    if compiled:  # --compile --compile-mode reduce-overhead is the compiled counterpart
        return "--compile compiles the model; --compile-mode reduce-overhead captures CUDA graphs of it"
    if wrapper is not None:
        return f"the strategy wraps the model in {wrapper}, whose work across GPUs or processes a graph cannot replay"
    return None


class TrainingGraphs:
    """The training forward and backward of ``module`` for batches like ``sample``, captured as
    CUDA graphs and replayed from the module's own ``forward`` until :meth:`remove`.

    The capture runs the module a few times on ``sample`` (batch-norm statistics move: the caller
    puts its state back) and must run under the autocast the training uses, with autocast's
    weight cache off (a graph must cast the current weights each replay, not reuse a cast).
    Parameters must be changed in place from then on (optimizers do), and their ``requires_grad``
    must not change: the graphs compute the gradients of the parameters that required them here.
    """

    def __init__(self, module: nn.Module, sample: torch.Tensor, capture: Capture | None = None) -> None:
        self.module = module
        self.shape = sample.shape
        self.dtype = sample.dtype
        self.requires_grad = sample.requires_grad
        self.device_type = sample.device.type
        self.autocast = _autocast_state(self.device_type)  # the graphs hold its casts
        self._own_forward = "forward" in module.__dict__  # a forward set on the instance, kept
        self._original = module.forward
        capture = capture or torch.cuda.make_graphed_callables
        try:
            # torch sets module.forward to one that replays in training mode: take it, and use it
            # only for batches the graphs fit
            capture(module, (sample,), num_warmup_iters=3, allow_unused_input=True)
        except BaseException:
            self.remove()
            raise
        self._replay: Callable[[torch.Tensor], Any] | None = module.forward
        module.forward = self._forward

    def _forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._replay is not None and self.fits(args, kwargs):
            return self._replay(args[0])
        return self._original(*args, **kwargs)

    def fits(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether a call is one the graphs were captured for: training, with gradients, under the
        same autocast, on one input tensor like the sample (shape, dtype, requires_grad)."""
        if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
            return False
        x = args[0]
        return (
            self.module.training and torch.is_grad_enabled()
            and x.shape == self.shape and x.dtype == self.dtype and x.requires_grad == self.requires_grad
            and _autocast_state(self.device_type) == self.autocast
        )

    def remove(self) -> None:
        """The module's forward as it was before the capture. The graphs' memory is let go, and
        with it the last step's gradients (views of the graphs' buffers)."""
        if self._own_forward:
            self.module.forward = self._original
        else:
            self.module.__dict__.pop("forward", None)
        self._replay = None
        for p in self.module.parameters():
            p.grad = None


def _autocast_state(device_type: str) -> tuple[bool, torch.dtype | None]:
    enabled = torch.is_autocast_enabled(device_type)
    return enabled, torch.get_autocast_dtype(device_type) if enabled else None
