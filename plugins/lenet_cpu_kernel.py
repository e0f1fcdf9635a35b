"""LeNet's training forward and backward for the CPU, written out (the same math as autograd's).

At the tutorial's batch of 4, LeNet's step is all overhead: ~15 autograd nodes, oneDNN's set-up
for convolutions with 6 channels, and a max-pool per node. ``forward`` and ``backward`` compute
the identical math with direct ATen calls: the first convolution as one im2col and one batched
product of its two halves (columns reused for its weight gradient; see ``_parts`` for why two),
the second through the plain (non-oneDNN) kernel, pooling before ReLU (equal: ReLU is
monotonic, and it halves the ReLU work), and both max-pools on channels-last copies (ATen's
NCHW max-pool mispredicts a branch on every other comparison of fresh data; the channels-last
one compares whole vectors). Gradients match autograd's to float rounding, ties in pooling
included (tested), and are the same bits on one thread or two.

Two ways in: ``cross_entropy_gradients`` (blitz's engine, through ``LeNet.direct_gradients``)
runs the loss and the backward without autograd at all, and under ``inference_mode``: ~0.46 ms
per step at batch 4 on one core of a 2-core CPU, ~0.39 ms on both. ``LeNetTrainStep`` is the
same as one autograd node, ~0.55 ms, for loops that call the model and ``loss.backward()``
themselves. Through autograd's modules it is ~0.72 ms.
"""

from __future__ import annotations

import contextlib
import operator
from typing import Any

import torch
import torch.nn.functional as F

aten = torch.ops.aten
_K5, _S1, _P0, _K2, _D1 = [5, 5], [1, 1], [0, 0], [2, 2], [1, 1]
_CL = torch.channels_last


def _im2col(x: torch.Tensor, by_rows: bool = False) -> torch.Tensor:
    """(B, C, H, W) -> (C*25, B*Ho*Wo): every 5x5 patch as a column, channel-major like the weights.

    ``by_rows``: every image's top half of output rows first, then the bottom halves (see
    ``_parts``).
    """
    b, c, h, w = x.shape
    ho, wo = h - 4, w - 4
    if by_rows:
        patches = x.as_strided((c, 5, 5, 2, b, ho // 2, wo), (h * w, w, 1, ho // 2 * w, c * h * w, w, 1))
    else:
        patches = x.as_strided((c, 5, 5, b, ho, wo), (h * w, w, 1, c * h * w, w, 1))
    return patches.reshape(c * 25, b * ho * wo)


class _OneThread:
    """Runs its block on one thread, whatever ``torch.set_num_threads`` says.

    Why: with more threads MKL splits a matrix product's sums in ways that depend on the thread
    count and the shapes (LeNet's small linear products differ in the last bits on 2 threads at
    batches 5-11), so a run's weights would depend on the count. The step runs everything on one
    thread but the first convolution's two-part ``bmm`` (one part per thread, see ``_parts``),
    ``_slow_conv2d`` (its forward and input gradient one image per thread; its weight gradient
    image after image), copies and max-pools. The ``bmm`` parts and the weight gradient's
    products are still MKL's to split, and at these shapes it does not: the step gives the same
    bits on one thread or two (tested for every batch 1-16 and layout; a review also scanned
    sizes 28-128, widths 1-2 and AVX2 code paths), and the engine may pick the faster
    (``--cpu-threads auto``). Setting the count costs ~0.1 us.
    """

    __slots__ = ("_before",)

    def __enter__(self) -> None:
        self._before = torch.get_num_threads()
        if self._before != 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        if self._before != 1:
            torch.set_num_threads(self._before)


def _parts(batch: int, side: int) -> tuple[int, bool]:
    """In how many parts the first convolution's columns go to ``bmm``, and whether they are cut
    between rows (else between images): each part a whole number of 2x2 pooling windows. Two
    parts, one per thread, where the shapes allow; one part runs on one thread (``_OneThread``).
    """
    if batch % 2 == 0:
        return 2, False
    return (2, True) if side % 4 == 0 else (1, False)


# How the (part, C, N', H', W') planes of the first layer map to (N, C, H, W) images, and back
# (both orders are their own inverse): parts of whole images, or of each image's rows.
_IMAGES_ORDER, _ROWS_ORDER = (0, 2, 1, 3, 4), (2, 1, 0, 3, 4)


Saved = tuple[torch.Tensor, ...]
Gradients = tuple[torch.Tensor, ...]


def forward(x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, Saved]:
    """LeNet's logits for ``x``, and what ``backward`` needs."""
    w1, b1, w2, b2, w3, b3, w4, b4, w5, b5 = params
    x = x.contiguous()
    batch, side = x.shape[0], x.shape[2] - 4
    parts, by_rows = _parts(batch, side)
    cols = _im2col(x, by_rows)
    c1, k1 = w1.shape[0], cols.shape[0]
    col_parts = cols.view(k1, parts, -1).transpose(0, 1)
    plane = (side // 2, side) if by_rows else (side, side)  # the max-pool's: a part of an image
    # conv1 in (part, C, N', H', W') layout: all of a part's patches in one product
    with _OneThread() if parts == 1 else contextlib.nullcontext():
        a1 = torch.baddbmm(b1.view(1, c1, 1), w1.reshape(1, c1, k1).expand(parts, -1, -1), col_parts)
    a1 = a1.view(1, -1, *plane)
    # Both max-pools run on channels-last copies: ATen's NCHW kernel branches on every
    # comparison and, on fresh data, mispredicts about half of them (3x slower); the
    # channels-last kernel compares whole vectors. Its indices are the same per-plane
    # positions, kept in NCHW order for the backward.
    m1, i1 = aten.max_pool2d_with_indices(a1.contiguous(memory_format=_CL), _K2, _K2)
    pooled = m1.relu_().view(parts, c1, batch if by_rows else batch // parts, *m1.shape[2:])
    # contiguous: _slow_conv2d's weight gradient reads its input as such (a view would be wrong)
    p1 = pooled.permute(_ROWS_ORDER if by_rows else _IMAGES_ORDER).contiguous().view(batch, c1, side // 2, -1)
    i1 = i1.contiguous()
    a2 = aten._slow_conv2d_forward(p1, w2, _K5, b2, _S1, _P0)
    m2, i2 = aten.max_pool2d_with_indices(a2.contiguous(memory_format=_CL), _K2, _K2)
    p2 = m2.relu_().contiguous().flatten(1)
    i2 = i2.contiguous()
    linear = F.linear  # addmm(bias, x, weight.t()), one call from Python instead of two
    with _OneThread():
        h1 = linear(p2, w3, b3).relu_()
        h2 = linear(h1, w4, b4).relu_()
        logits = linear(h2, w5, b5)
    return logits, (col_parts, a1, i1, p1, a2, i2, p2, h1, h2, w1, w2, w3, w4, w5)


def backward(dz: torch.Tensor, saved: Saved, out: Gradients | None = None) -> Gradients:
    """The gradients of the ten parameters, in ``params`` order, from the logits' gradient ``dz``.

    Written into ``out`` (ten tensors shaped as the parameters) where given, else new tensors.
    """
    col_parts, a1, i1, p1, a2, i2, p2, h1, h2, w1, w2, w3, w4, w5 = saved
    g1, gb1, g2, gb2, g3, gb3, g4, gb4, g5, gb5 = out or (None,) * 10
    dz = dz.contiguous()
    relu_back = aten.threshold_backward
    with _OneThread():
        g5, gb5 = torch.mm(dz.t(), h2, out=g5), torch.sum(dz, 0, out=gb5)
        dh2 = relu_back(dz.mm(w5), h2, 0)
        g4, gb4 = torch.mm(dh2.t(), h1, out=g4), torch.sum(dh2, 0, out=gb4)
        dh1 = relu_back(dh2.mm(w4), h1, 0)
        g3, gb3 = torch.mm(dh1.t(), p2, out=g3), torch.sum(dh1, 0, out=gb3)
        dp2 = relu_back(dh1.mm(w3), p2, 0)
    dp2 = dp2.view(a2.shape[0], a2.shape[1], a2.shape[2] // 2, a2.shape[3] // 2)
    da2 = aten.max_pool2d_with_indices_backward(dp2, a2, _K2, _K2, _P0, _D1, False, i2)
    if out is None:
        gi2, g2, gb2 = aten._slow_conv2d_backward.output_mask(da2, p1, w2, _K5, _S1, _P0, [True, True, True])
    else:  # the same kernel (it overwrites, not adds to, the weight and bias gradients)
        gi2 = aten._slow_conv2d_backward.grad_input(
            da2, p1, w2, _K5, _S1, _P0, grad_input=torch.empty_like(p1), grad_weight=g2, grad_bias=gb2
        )[0]
    parts, c1, batch = col_parts.shape[0], w1.shape[0], p1.shape[0]
    by_rows = _parts(batch, a1.shape[3])[1]  # a1's planes are side wide
    order, shape = (_ROWS_ORDER, (batch, c1, parts)) if by_rows else (_IMAGES_ORDER, (parts, batch // parts, c1))
    # back to the forward's (part, C, N', H', W') planes
    dp1 = relu_back(gi2, p1, 0).view(*shape, *i1.shape[2:]).permute(order).reshape(i1.shape)
    da1 = aten.max_pool2d_with_indices_backward(dp1, a1, _K2, _K2, _P0, _D1, False, i1).view(parts, c1, -1)
    # per part (one per thread), then the parts added; into the buffer itself where given (its
    # view), so that .grad is the buffer, not a view of it
    if parts == 1:
        with _OneThread():
            product = torch.bmm(da1, col_parts.transpose(1, 2), out=None if g1 is None else g1.view(1, c1, -1))
    else:
        per_part = torch.bmm(da1, col_parts.transpose(1, 2))
        product = torch.add(per_part[0], per_part[1], out=None if g1 is None else g1.view(c1, -1))
    g1 = product.view(w1.shape) if g1 is None else g1
    with _OneThread():
        gb1 = torch.sum(da1, (0, 2), out=gb1)
    return g1, gb1, g2, gb2, g3, gb3, g4, gb4, g5, gb5


class LeNetTrainStep(torch.autograd.Function):
    """``forward`` and ``backward`` as one autograd node: for loops that call the model themselves."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        logits, saved = forward(x, params)
        ctx.save_for_backward(*saved)
        return logits

    @staticmethod
    def backward(ctx: Any, dz: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        return None, *backward(dz, ctx.saved_tensors)


_ONE = torch.ones((), dtype=torch.float32)  # the loss's gradient; float32 whatever the default dtype


class GradientBuffers:
    """The tensors a model's gradients are written into, the same ones step after step.

    The step runs under ``inference_mode``, whose ATen calls skip autograd's dispatch (~4 % of a
    batch-4 step); but a tensor made there is an inference tensor, which no code outside may
    change in place (an optimizer or a gradient clip would fail on it). So the gradients are
    written into ordinary tensors made here once, outside it, as ``zero_grad(set_to_none=False)``
    reuses them. Not pickled with the model: they are scratch space.
    """

    def __init__(self) -> None:
        self._params: tuple[torch.Tensor, ...] = ()
        self._tensors: Gradients = ()

    def for_params(self, params: tuple[torch.Tensor, ...]) -> Gradients:
        """Ten float32 tensors shaped as ``params``; made again when ``params`` are other tensors."""
        tensors = self._tensors
        if len(self._params) != len(params) or not all(map(operator.is_, self._params, params)) or not (
            # a buffer converted while it was .grad (`model.double()`, `.to(channels_last)`): the
            # two conv weights' show it (they are the only 4-D ones; dtype moves convert all)
            tensors[0].dtype is torch.float32 and tensors[0].is_contiguous() and tensors[2].is_contiguous()
            and tensors[-1].dtype is torch.float32 and tensors[0].is_cpu
        ):  # other parameters, or converted buffers
            self._params = params
            self._tensors = tuple(torch.empty(p.shape, dtype=torch.float32) for p in params)
        return self._tensors

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]


def cross_entropy_gradients(
    x: torch.Tensor, labels: torch.Tensor, params: tuple[torch.Tensor, ...], buffers: GradientBuffers,
    ignore_index: int = -100,
) -> torch.Tensor:
    """The mean cross-entropy of a batch; its gradients are added to each parameter's ``.grad``.

    Without autograd: the same ATen calls as ``F.cross_entropy`` and its backward, then
    ``backward``. The autograd engine's graph walk, its call back into Python for the custom node
    and the loss's two nodes cost ~90 us of a ~580 us step at batch 4. Where no parameter has a
    gradient yet (after ``zero_grad()``), the gradients are written straight into ``buffers``,
    which become the ``.grad`` tensors; else they are added to the ``.grad`` there is.
    """
    unset = all(p.grad is None for p in params)
    kept = buffers.for_params(params)  # outside inference_mode: ordinary tensors
    with torch.inference_mode():
        logits, saved = forward(x, params)
        with _OneThread():
            log_probs = aten._log_softmax(logits, 1, False)
            loss, total_weight = aten.nll_loss_forward(log_probs, labels, None, 1, ignore_index)
            d_log_probs = aten.nll_loss_backward(_ONE, log_probs, labels, None, 1, ignore_index, total_weight)
            dz = aten._log_softmax_backward_data(d_log_probs, log_probs, 1, torch.float32)
        grads = backward(dz, saved, kept if unset else None)
        for p, g, k in zip(params, grads, kept):
            if not p.requires_grad:
                continue
            if unset:
                p.grad = g
            elif p.grad is None:
                p.grad = k.copy_(g)
            else:
                p.grad.add_(g)
    return loss.clone()  # an ordinary tensor: a caller may change it in place (`loss += ...`)


SMALL_BATCH = 16  # above this, oneDNN's multi-threaded convolutions win (measured: 3x at batch 128)


def usable(x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> bool:
    """Whether the fused step applies: a small float32 batch on the CPU, gradients wanted, no
    autocast, contiguous weights (channels-last ones would need gradients laid out alike)."""
    # Runs every step, so it uses the cheap checks (`is_cpu`, dtype identity): ~1 us, not ~5.
    f32 = torch.float32
    return (
        x.shape[0] <= SMALL_BATCH
        and x.is_cpu
        and x.dtype is f32
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and all(p.dtype is f32 and p.is_cpu for p in params)
        and params[0].is_contiguous() and params[2].is_contiguous()  # the conv weights: the only 4-D ones
    )
