"""airbench94: the fast CIFAR-10 methods of Keller Jordan (2024) as blitz components.

"94% on CIFAR-10 in 3.29 Seconds on a Single GPU" (arXiv 2404.00498) trains a small VGG-like
network to 94 % test accuracy in about 10 epochs. The speed comes from a handful of tricks, each
of which lives here in the blitz component it belongs to:

* model ``airbench``: a frozen 2x2 patch-whitening first layer (fit to the training data through
  ``init_from_data``), identity (Dirac) initialization of the 3x3 convolutions, BatchNorm with
  frozen scales and fast running statistics, GELU, a scaled-down output, and test-time
  augmentation (flip and 1-pixel translations) done by ``forward`` in eval mode;
* optimizer ``airbench_sgd``: Nesterov SGD with the paper's decoupled units, 64x learning rate on
  BatchNorm biases, the whitening bias frozen after the first epochs, and Lookahead (an EMA of the
  weights that the fast weights are pulled back to every 5 steps, and that they become at the end);
* schedule ``airbench``: linear warm-up from 0.2x to the peak over 23 % of the steps, then linear
  decay to 0.07x.

The rest of the recipe is run configuration that blitz's engine applies: label smoothing 0.2,
alternating flip (random in the first epoch, then each image the other way round every epoch;
the paper's ablations need about 10.8 epochs for 94 % with random flips, 9.9 with these) and
2-pixel reflect-padded translation, batch size 1024, bf16 and channels-last, evaluation and
checkpoints only at the end. Left out: the paper's fractional epoch count (9.9; blitz counts whole
epochs, so the recipe uses 10).

The newer record, airbench94_muon (94.01 % in 8 epochs), keeps the network and changes the
training: optimizer ``airbench_muon`` updates the conv filters with Muon (``blitz.plugins.muon``)
and the BatchNorm biases, whitening bias and head with Nesterov SGD, under a plain linear decay
(schedule ``linear``; the whitening bias's own decay ends after 3 of the 8 epochs); no Lookahead;
batch size 2000; the head starts at unit scale (``head_std``) with the logits divided by the width.

The ``airbench`` schedule tells an ``airbench_sgd`` optimizer the run's total number of steps
(``set_total_steps``): Lookahead's strength and the whitening-bias cut-off depend on the
fraction of training done. With another schedule the optimizer is plain Nesterov SGD with the
paper's parameter groups (no Lookahead, whitening bias trained throughout).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from blitz import Register, hookimpl
from blitz.lazy_dynamo import LazyDynamoOptimizer
from blitz.options import check_flag, check_fraction, check_option
from blitz.plugins.muon import Muon, default_ns_dtype
from blitz.plugins.optimizers import zero_missing_momentum_buffers
from blitz.plugins.schedules import refuse_spans

# --------------------------------------------------------------------------------------------
# Hyperparameters: airbench94's values, all in one place. The recipe (registry.toml) repeats
# the run-level ones (lr, momentum, weight_decay, label smoothing, augmentation).
# --------------------------------------------------------------------------------------------

# Network
WIDTHS = (64, 256, 256)  # output channels of the three conv groups
BATCHNORM_MOMENTUM = 0.6  # weight of the OLD running statistic (PyTorch's momentum is 1 - this):
#                           fast-moving statistics are what make Lookahead work (the paper's note)
BATCHNORM_EPS = 1e-12  # practically no epsilon: the scales are frozen at 1, nothing to absorb it
SCALING_FACTOR = 1 / 9  # multiplies the logits: a cooler softmax at init, tuned in the paper
WHITEN_KERNEL_SIZE = 2  # the whitening layer sees 2x2 patches: 3*2*2 = 12 dimensions
WHITEN_EPS = 5e-4  # added to the patch-covariance eigenvalues before dividing by their sqrt
TTA_LEVEL = 2  # eval-mode test-time augmentation: 0 none, 1 flip, 2 flip and 1-pixel shifts

# Optimizer (units: see build_airbench_sgd)
LR = 11.5  # step size per 1024-example batch, momentum's gain divided out
MOMENTUM = 0.85  # Nesterov
WEIGHT_DECAY = 0.0153  # decay per 1024-example batch, momentum's gain divided out, lr-independent
BIAS_SCALER = 64.0  # BatchNorm biases learn 64x faster (weight decay is not scaled)
WHITEN_BIAS_FRACTION = 0.3  # the whitening bias trains for the first 30 % of steps (3 of 10 epochs)
LOOKAHEAD_EVERY = 5  # steps between Lookahead synchronizations
LOOKAHEAD_DECAY = 0.95**5  # EMA decay at the end of training; it grows as (progress ** 3)

# airbench94_muon's optimizer (units: see build_airbench_muon)
MUON_LR = 0.24  # Muon's step for the conv filters (scale-free: the update is orthogonalized)
MUON_MOMENTUM = 0.6  # Nesterov, for the filters
MUON_NS_STEPS = 3  # Newton-Schulz steps per update: the reference's 3 (Muon's general default is 5)
MUON_BATCH_SIZE = 2000  # the reference's batch; its SGD rates below are per example (summed loss)
MUON_SGD_MOMENTUM = 0.85  # Nesterov, for biases and the head
MUON_BIAS_LR = 0.053 * MUON_BATCH_SIZE  # BatchNorm and whitening biases, PyTorch lr for a mean loss
MUON_HEAD_LR = 0.67 * MUON_BATCH_SIZE  # the linear head
MUON_WEIGHT_DECAY = 2e-6 * MUON_BATCH_SIZE  # per-step decay of the SGD groups at the schedule's peak
MUON_WHITEN_BIAS_FRACTION = 3 / 8  # the whitening bias's lr decays to 0 over the first 3 of 8 epochs

# Schedule (multipliers of the optimizer's lr)
WARMUP = 0.23  # fraction of the steps spent warming up
START = 0.2  # multiplier at step 0
FINAL = 0.07  # multiplier at the last step


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def _batchnorm(channels: int, momentum: float) -> nn.BatchNorm2d:
    """BatchNorm whose scale is frozen at 1: only the bias (a per-channel shift) learns.

    With a following GELU and no residual connections, a learnable scale only adds a redundant
    degree of freedom; freezing it saves its updates and, per the paper, loses nothing.
    """
    norm = nn.BatchNorm2d(channels, eps=BATCHNORM_EPS, momentum=1 - momentum)
    norm.weight.requires_grad_(False)
    return norm


def _conv3x3(channels_in: int, channels_out: int) -> nn.Conv2d:
    """A 3x3 'same' convolution, identity-initialized on its first ``channels_in`` filters.

    Dirac filters make each conv start as (partly) the identity map, so signal passes through the
    untrained network unchanged and early steps are spent learning features rather than
    undoing random mixing; the remaining filters keep PyTorch's default random init.
    """
    conv = nn.Conv2d(channels_in, channels_out, kernel_size=3, padding="same", bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:channels_in])
    return conv


class ConvGroup(nn.Module):
    """conv -> 2x2 max-pool -> BN -> GELU -> conv -> BN -> GELU (pooling early saves 3/4 of the
    first conv's successors' work)."""

    def __init__(self, channels_in: int, channels_out: int, batchnorm_momentum: float) -> None:
        super().__init__()
        self.conv1 = _conv3x3(channels_in, channels_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _batchnorm(channels_out, batchnorm_momentum)
        self.conv2 = _conv3x3(channels_out, channels_out)
        self.norm2 = _batchnorm(channels_out, batchnorm_momentum)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.norm1(self.pool(self.conv1(x))))
        return self.activation(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """airbench94's network: whitening stem, conv groups, global max-pool, linear head.

    In training mode ``forward`` returns plain logits; in eval mode it averages the logits of the
    test-time-augmented views (``tta_level``), so any generic evaluation gets the paper's TTA.
    blitz calls ``init_from_data`` before training when the training set is held as tensors;
    without it the frozen stem stays a random projection (it trains, but slower).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: Sequence[int] = WIDTHS,
        batchnorm_momentum: float = BATCHNORM_MOMENTUM,
        scaling_factor: float = SCALING_FACTOR,
        tta_level: int = TTA_LEVEL,
        whiten_kernel_size: int = WHITEN_KERNEL_SIZE,
        whiten_eps: float = WHITEN_EPS,
        head_std: float | None = None,
        zero_whiten_bias: bool = True,
        whiten_in_fp32: bool = False,
    ) -> None:
        super().__init__()
        if tta_level not in (0, 1, 2):
            raise ValueError(f"tta_level must be 0, 1 or 2, got {tta_level}")
        if not widths or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be positive channel counts, got {list(widths)}")
        if not 0 <= batchnorm_momentum < 1:
            raise ValueError(f"batchnorm_momentum must be in [0, 1), got {batchnorm_momentum}")
        self.tta_level = tta_level
        self.scaling_factor = scaling_factor
        self.whiten_eps = whiten_eps
        # The stem has 2x as many filters as patch dimensions: each whitening filter and its
        # negation, so the GELU that follows keeps both signs of every whitened component.
        whiten_width = 2 * in_chans * whiten_kernel_size**2
        self.whiten = nn.Conv2d(in_chans, whiten_width, kernel_size=whiten_kernel_size, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)  # frozen: set from the data, never trained
        check_flag("zero_whiten_bias", zero_whiten_bias)
        check_flag("whiten_in_fp32", whiten_in_fp32)
        self.whiten_in_fp32 = whiten_in_fp32
        if zero_whiten_bias:  # airbench94 starts it at 0; airbench94_muon keeps PyTorch's random init
            with torch.no_grad():
                self.whiten.bias.zero_()  # the bias does train (for the first epochs; see airbench_sgd)
        self.activation = nn.GELU()
        channels = [whiten_width, *(int(w) for w in widths)]
        self.groups = nn.Sequential(
            *(ConvGroup(c_in, c_out, batchnorm_momentum) for c_in, c_out in zip(channels, channels[1:]))
        )
        self.head = nn.Linear(channels[-1], num_classes, bias=False)
        if head_std is not None:  # airbench94_muon: a unit-scale head, its logits divided by the width
            check_option("head_std", head_std, 0)
            if head_std == 0:
                raise ValueError("head_std must be positive, got 0")
            with torch.no_grad():
                self.head.weight.mul_(head_std / self.head.weight.std())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.whitened(x))
        x = self.groups(x)
        # Global max-pool: on 32x32 inputs the maps are 3x3 here, where this is exactly the
        # paper's nn.MaxPool2d(3); pooling over all positions also serves other sizes. Not
        # x.amax(): under torch.compile with bf16 its backward compares the max against values
        # rounded differently, finds no position equal to it, and divides by zero (NaN);
        # max-pooling's backward routes the gradient through saved indices instead.
        return F.adaptive_max_pool2d(x, 1).flatten(1)

    def whitened(self, x: torch.Tensor) -> torch.Tensor:
        """The stem's output; with ``whiten_in_fp32`` computed in fp32 under autocast, then
        rounded to autocast's dtype.

        The whitening filters divide by the square roots of small eigenvalues (weights up to ~10),
        and the outputs of the faint directions are differences of large products: with bf16's
        8 significand bits, inputs and weights rounded give those outputs up to several percent
        of error. In fp32 only the output's final rounding is left (on a GPU, where cuDNN may
        use TF32, inputs and weights keep fp16's 11 bits: a few tenths of a percent).
        """
        device = x.device.type
        if not self.whiten_in_fp32 or not torch.is_autocast_enabled(device):
            return self.whiten(x)
        dtype = torch.get_autocast_dtype(device)
        with torch.autocast(device, enabled=False):
            return self.whiten(x.float()).to(dtype)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.scaling_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.tta_level == 0:
            return self.logits(x)
        return self.tta_logits(x)

    def tta_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Weighted mean of the logits of augmented views.

        Level 1: the image and its mirror, 1/2 each. Level 2: those two at 1/4 each, plus the
        image shifted one pixel up-left and one pixel down-right (reflect padding), each also
        mirrored, at 1/8 each: the translations seen in training, weighted by how likely they are.

        Run eagerly, each view is a pass of its own, as in the reference: at the evaluation
        batch size (airbench94_muon's is its training batch size, so cuDNN's algorithms chosen
        in training serve), where one pass over all views, 6x the batch, would be tuned again
        (warm-up time) and hold 6x the activations. Compiled, the views go in one batched pass:
        a graph a sixth of the size.
        """
        n, _, h, w = x.shape
        views = [x, x.flip(-1)]
        weights = [0.5, 0.5]
        if self.tta_level >= 2:
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
            for shifted in (padded[:, :, :h, :w], padded[:, :, 2:, 2:]):
                views += [shifted, shifted.flip(-1)]
            weights = [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
        if torch.compiler.is_compiling():
            batched = self.logits(torch.cat(views)).float().view(len(views), n, -1)
            per_view = list(batched.unbind())
        else:
            per_view = [self.logits(view).float() for view in views]
        total = weights[0] * per_view[0]
        for weight, logits in zip(weights[1:], per_view[1:]):
            total = total + weight * logits
        return total

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Set the frozen stem to whiten the patches of ``images`` (normalized, (N, C, H, W)),
        on whatever device they are (the model may still be on the CPU).

        The filters are the eigenvectors of the (uncentered) patch covariance, each divided by
        the square root of its eigenvalue (+ ``whiten_eps``): the stem's outputs are then
        decorrelated with unit variance. Whitened inputs make the loss surface much better
        conditioned for the layers above, which the paper finds worth several epochs.
        """
        conv = self.whiten
        c, k = conv.in_channels, conv.kernel_size[0]
        if images.dim() != 4 or images.shape[1] != c or images.shape[0] < 1:
            raise ValueError(f"init_from_data needs images of shape (N, {c}, H, W), got {tuple(images.shape)}")
        dims = c * k * k
        covariance = torch.zeros(dims, dims, dtype=torch.float64, device=images.device)
        count = 0
        for chunk in images.split(500):  # chunks keep the patch matrix small (5000 images: 4.8M patches)
            # unfold orders each patch's values (channel, row, column), as conv weights are laid out
            patches = F.unfold(chunk.double(), kernel_size=k).transpose(1, 2).reshape(-1, dims)
            covariance += patches.T @ patches
            count += patches.shape[0]
        covariance /= count
        # The 12x12 eigendecomposition on the CPU: on a GPU its solver's first call costs far more
        # than the arithmetic, and this is inside the timed region.
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance.cpu())  # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)  # largest variance first
        filters = (eigenvectors / torch.sqrt(eigenvalues.clamp_min(0) + self.whiten_eps)).T
        filters = filters.reshape(dims, c, k, k)
        conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight))


def build_airbench(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    widths: Sequence[int] = WIDTHS,
    batchnorm_momentum: float = BATCHNORM_MOMENTUM,
    scaling_factor: float = SCALING_FACTOR,
    tta_level: int = TTA_LEVEL,
    whiten_kernel_size: int = WHITEN_KERNEL_SIZE,
    whiten_eps: float = WHITEN_EPS,
    head_std: float | None = None,
    zero_whiten_bias: bool = True,
    whiten_in_fp32: bool = False,
) -> AirbenchNet:
    """airbench94's network for images of ``input_shape`` (C, H, W); made for 32x32.

    :param widths: channels of the conv groups (each halves the resolution).
    :param batchnorm_momentum: weight of the old running statistic (PyTorch momentum = 1 - this).
    :param scaling_factor: multiplier of the logits.
    :param tta_level: eval-mode test-time augmentation: 0 none, 1 flip, 2 flip + 1-pixel shifts.
    :param whiten_kernel_size: patch size of the whitening stem.
    :param whiten_eps: added to the patch-covariance eigenvalues.
    :param head_std: rescale the head's initial weights to this standard deviation (default:
        PyTorch's init).
    :param zero_whiten_bias: start the whitening layer's bias at 0 (else PyTorch's random init).
    :param whiten_in_fp32: under autocast (bf16, fp16), compute the whitening layer in fp32 and
        round only its output (bf16 loses a few percent in its faint directions).
    """
    if len(input_shape) != 3:
        raise ValueError(f"airbench takes images (C, H, W), not inputs of shape {tuple(input_shape)}")
    side = min(input_shape[1], input_shape[2]) - whiten_kernel_size + 1
    for _ in widths:
        side //= 2
    if side < 1:
        raise ValueError(
            f"airbench with {len(widths)} conv groups needs larger images than "
            f"{input_shape[1]}x{input_shape[2]} (each group halves the resolution)"
        )
    return AirbenchNet(
        num_classes=num_classes, in_chans=input_shape[0], widths=widths,
        batchnorm_momentum=batchnorm_momentum, scaling_factor=scaling_factor, tta_level=tta_level,
        whiten_kernel_size=whiten_kernel_size, whiten_eps=whiten_eps, head_std=head_std,
        zero_whiten_bias=zero_whiten_bias, whiten_in_fp32=whiten_in_fp32,
    )


# --------------------------------------------------------------------------------------------
# Optimizer
# --------------------------------------------------------------------------------------------

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


class AirbenchSGD(LazyDynamoOptimizer, torch.optim.SGD):
    """Nesterov SGD plus two things that depend on how far training has come.

    * A group with ``active_fraction`` < 1 stops learning (its gradients are dropped, as if its
      parameters no longer required grad) after that fraction of all steps.
    * Lookahead: every ``lookahead_every`` steps the EMA ("slow") weights move toward the current
      ("fast") weights, and the fast weights are reset to them. The EMA decay grows as the cube of
      progress, so the averaging is negligible early and strong at the end; after the last step the
      model holds the EMA. It covers every floating-point tensor of ``module`` (parameters and the
      BatchNorm running statistics), as in the paper.

    Both need the run's length, given by ``set_total_steps`` (the ``airbench`` schedule calls it);
    until then neither happens. The step count and the EMA are part of ``state_dict()``.
    """

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        *,
        module: nn.Module | None,
        lookahead_every: int = LOOKAHEAD_EVERY,
        lookahead_decay: float = LOOKAHEAD_DECAY,
        **sgd_options: Any,
    ) -> None:
        super().__init__(params, **sgd_options)
        self.module = module
        self.lookahead_every = lookahead_every if module is not None else 0
        self.lookahead_decay = lookahead_decay
        self.total_steps: int | None = None
        self.steps_taken = 0
        self.ema: list[torch.Tensor] | None = None

    def set_total_steps(self, total_steps: int) -> None:
        self.total_steps = max(int(total_steps), 1)

    def parameters_done_at(self) -> dict[int, list[torch.Tensor]]:
        """{steps: parameters} for the groups whose gradients are dropped from that many steps
        on (``active_fraction``): blitz stops computing them there (``blitz.freezing``)."""
        done: dict[int, list[torch.Tensor]] = {}
        if self.total_steps is not None:
            for group in self.param_groups:
                if group.get("active_fraction", 1.0) < 1:
                    done.setdefault(round(group["active_fraction"] * self.total_steps), []).extend(group["params"])
        return done

    def _tracked(self) -> list[torch.Tensor]:
        """The module's tensors Lookahead averages, looked up each time (buffers can be replaced)."""
        assert self.module is not None
        tensors = [*self.module.parameters(), *self.module.buffers()]
        return [t for t in tensors if t.is_floating_point()]

    @torch.no_grad()
    def _sync(self, decay: float) -> None:
        """Move the EMA toward the fast weights by ``1 - decay``, then reset the fast weights to it."""
        assert self.ema is not None
        fast = self._tracked()
        # One fused kernel launch per op for all tensors, not two per tensor: this runs every
        # few steps, and on a GPU the launches would cost more than the arithmetic.
        torch._foreach_lerp_(self.ema, fast, 1 - decay)
        torch._foreach_copy_(fast, self.ema)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        lookahead = self.lookahead_every > 0 and self.total_steps is not None
        if lookahead and self.ema is None:  # the slow weights start at the weights before step 1
            self.ema = [t.detach().clone() for t in self._tracked()]
        if self.total_steps is not None:
            for group in self.param_groups:
                if self.steps_taken >= round(group.get("active_fraction", 1.0) * self.total_steps):
                    for p in group["params"]:
                        p.grad = None  # SGD skips it: no update, no decay, no momentum
        zero_missing_momentum_buffers(self)  # fused SGD's first step under fp16 (see there)
        super().step()
        # Counted per call, like the schedule's steps. (With fp16 and a GradScaler, a step skipped
        # for inf gradients still counts with fused SGD, which skips inside its kernel, and does
        # not with foreach SGD, which the scaler does not call; with bf16 nothing is skipped.)
        self.steps_taken += 1
        if lookahead:
            assert self.total_steps is not None
            progress = min(self.steps_taken / self.total_steps, 1.0)
            if self.steps_taken % self.lookahead_every == 0:
                self._sync(self.lookahead_decay * progress**3)
            if self.steps_taken == self.total_steps:
                self._sync(1.0)  # decay 1: the EMA stays, and the model ends on it
        return loss

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["airbench"] = {"steps_taken": self.steps_taken, "ema": list(self.ema or [])}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("airbench", None)
        super().load_state_dict(state_dict)
        if extra is None:
            return
        self.steps_taken = int(extra["steps_taken"])
        saved = list(extra["ema"])
        if not saved:
            self.ema = None
            return
        if self.module is None:
            raise ValueError("this optimizer has no module to hold Lookahead weights for")
        tracked = self._tracked()
        if len(saved) != len(tracked) or any(s.shape != t.shape for s, t in zip(saved, tracked)):
            raise ValueError("the saved Lookahead weights do not match this model's tensors")
        self.ema = [s.to(device=t.device, dtype=t.dtype).clone() for s, t in zip(saved, tracked)]


def _trainable_by_role(model: nn.Module) -> list[tuple[nn.Parameter, str]]:
    """The trainable parameters in the model's order, each with its role in airbench's optimizers:
    "stem" (the whitening layer's bias), "norm" (a normalization layer's) or "other"."""
    whiten = getattr(model, "whiten", None)
    whiten_bias = whiten.bias if isinstance(whiten, nn.Conv2d) and whiten.bias is not None else None
    norm_params = {
        id(p) for m in model.modules() if isinstance(m, _NORM_TYPES) for p in m.parameters(recurse=False)
    }
    return [
        (p, "stem" if p is whiten_bias else "norm" if id(p) in norm_params else "other")
        for p in model.parameters() if p.requires_grad
    ]


def build_airbench_sgd(
    model: nn.Module,
    *,
    lr: float = LR,
    momentum: float = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY,
    bias_scaler: float = BIAS_SCALER,
    whiten_bias_fraction: float = WHITEN_BIAS_FRACTION,
    lookahead: bool = True,
    lookahead_every: int = LOOKAHEAD_EVERY,
    fused: bool | None = None,
) -> AirbenchSGD:
    """airbench94's optimizer, in the paper's decoupled units.

    Units. The paper sums the loss over the batch and quotes lr and weight decay "per 1024
    examples"; blitz's loss is the batch mean, so at batch size 1024 the numbers carry over:

    * ``lr`` (paper 11.5): the average step per 1024-example batch for a constant gradient, with
      Nesterov momentum's gain ``1 + 1 / (1 - momentum)`` divided out, so momentum can be changed
      without retuning lr. The PyTorch learning rate is ``lr / (1 + 1 / (1 - momentum))``
      (1.5 for the paper's values); that is the ``lr`` blitz logs.
    * ``weight_decay`` (paper 0.0153): per step, each weight shrinks by
      ``weight_decay / (1 + 1 / (1 - momentum))`` times the schedule's multiplier, whatever lr is
      (PyTorch's coupled coefficient is set to that divided by each group's lr).

    Both are per 1024 examples: at another batch size B, multiply both by B / 1024 to keep the
    paper's per-example rates.

    Parameter groups: the weights (and anything else), normalization-layer affine parameters
    with ``lr * bias_scaler`` (in airbench only BatchNorm biases train, and a 64x rate lets these
    per-channel shifts keep up with the conv weights), and the whitening stem's bias, which stops
    training after ``whiten_bias_fraction`` of the steps (it has done its job by then, and the
    paper saves its backward work). Decay strength is the same in every group.

    Lookahead (``lookahead_every`` steps; False to disable) and the whitening-bias cut-off need
    the ``airbench`` schedule, which tells the optimizer the number of steps.
    """
    if not 0 <= momentum < 1:
        raise ValueError(f"airbench_sgd needs 0 <= momentum < 1, got {momentum}")
    check_fraction("whiten_bias_fraction", whiten_bias_fraction, zero_allowed=True)
    gain = 1 + 1 / (1 - momentum)  # how much Nesterov momentum amplifies a constant gradient
    base_lr = lr / gain  # PyTorch lr
    decay = weight_decay / gain  # fraction of a weight removed per step at the schedule's peak

    roles = _trainable_by_role(model)
    main = [p for p, role in roles if role == "other"]
    norms = [p for p, role in roles if role == "norm"]
    stem = [p for p, role in roles if role == "stem"]

    def group(params: list[nn.Parameter], group_lr: float, active_fraction: float = 1.0) -> dict[str, Any]:
        return {
            "params": params, "lr": group_lr, "active_fraction": active_fraction,
            "weight_decay": decay / group_lr if group_lr > 0 else 0.0,
        }

    # The main group comes first: blitz reports param_groups[0]["lr"].
    groups = [
        group(main, base_lr),
        group(norms, base_lr * bias_scaler),
        group(stem, base_lr, whiten_bias_fraction),
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("airbench_sgd: the model has no trainable parameters")
    params = [p for g in groups for p in g["params"]]
    if fused is None:  # PyTorch's fused SGD kernel where every parameter supports it
        fused = all(p.device.type in ("cuda", "cpu") and p.dtype.is_floating_point for p in params)
    return AirbenchSGD(
        groups, module=model, lookahead_every=lookahead_every if lookahead else 0,
        lr=base_lr, momentum=momentum, nesterov=momentum > 0, **({"fused": True} if fused else {}),
    )


def build_airbench_muon(
    model: nn.Module,
    *,
    lr: float = MUON_LR,
    momentum: float = MUON_MOMENTUM,
    weight_decay: float = MUON_WEIGHT_DECAY,
    bias_lr: float = MUON_BIAS_LR,
    head_lr: float = MUON_HEAD_LR,
    sgd_momentum: float = MUON_SGD_MOMENTUM,
    ns_steps: int = MUON_NS_STEPS,
    whiten_bias_fraction: float = MUON_WHITEN_BIAS_FRACTION,
    freeze_whiten_bias: bool = True,
) -> Muon:
    """airbench94_muon's optimizer: Muon for the conv filters, Nesterov SGD for the rest.

    * Conv filters (every trainable 4-D parameter): Muon with ``lr`` and Nesterov ``momentum``,
      ``ns_steps`` Newton-Schulz steps, each filter bank renormalized to norm ``sqrt(out_channels)``
      before its step, no weight decay.
    * Normalization-layer parameters and the whitening stem's bias: SGD with ``bias_lr``; the
      stem's bias's lr decays to 0 over the first ``whiten_bias_fraction`` of the steps (under a
      blitz schedule that honours ``schedule_span``: ``linear``, ``cosine``).
    * The head and anything else: SGD with ``head_lr``.

    Once the stem's bias is at lr 0, blitz stops computing its gradient (``freeze_whiten_bias``;
    the reference detaches it), which spares the first conv layer's input-gradient pass; the
    training is the same (``blitz.freezing``).

    Units: the SGD rates are PyTorch learning rates for blitz's mean loss: the reference sums the
    loss over its batch of 2000 and uses 0.053 and 0.67, so these are those times 2000 (at another
    global batch size B, all processes together, scale both by B / 2000). ``weight_decay`` is the
    pull toward 0 that each step adds to an SGD-trained weight's update at the schedule's peak,
    whatever the group's lr (the reference's 2e-6 per example, times 2000): PyTorch's coupled
    coefficient is that divided by each group's lr, so it also goes through the momentum, which
    amplifies a steady pull up to about 1 / (1 - sgd_momentum) times.

    The rates assume the recipe's head: ``head_std=1`` and logits divided by 256
    (``scaling_factor``); with airbench's default head (PyTorch's init, logits / 9) they are far
    too large and training diverges.
    """
    check_option("sgd_momentum", sgd_momentum, 0, 1)
    check_option("bias_lr", bias_lr, 0)
    check_option("head_lr", head_lr, 0)
    check_option("ns_steps", ns_steps, 1, whole=True)
    check_flag("freeze_whiten_bias", freeze_whiten_bias)
    check_fraction("whiten_bias_fraction", whiten_bias_fraction, zero_allowed=False)
    roles = _trainable_by_role(model)
    filters = [p for p, role in roles if role == "other" and p.dim() == 4]
    stem = [p for p, role in roles if role == "stem"]
    norms = [p for p, role in roles if role == "norm"]
    rest = [p for p, role in roles if role == "other" and p.dim() != 4]
    if not filters:
        raise ValueError("airbench_muon: the model has no trainable conv filters for Muon")

    def sgd(name: str, params: list[nn.Parameter], group_lr: float, span: float = 1.0) -> dict[str, Any]:
        return {
            "name": name, "params": params, "use_muon": False, "lr": group_lr, "momentum": sgd_momentum,
            "nesterov": sgd_momentum > 0, "weight_decay": weight_decay / group_lr if group_lr > 0 else 0.0,
            "schedule_span": span,
        }

    # The filters come first: blitz reports param_groups[0]["lr"].
    groups = [{"name": "filters", "params": filters, "use_muon": True},
              {**sgd("whitening bias", stem, bias_lr, whiten_bias_fraction), "freeze_when_done": freeze_whiten_bias},
              sgd("norms", norms, bias_lr), sgd("head", rest, head_lr)]
    return Muon(
        [g for g in groups if g["params"]], lr=lr, momentum=momentum, nesterov=momentum > 0,
        ns_steps=ns_steps, ns_dtype=default_ns_dtype(model), normalize_weights=True,
    )


# --------------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------------


class AirbenchLR(LambdaLR):
    """LambdaLR over ``AirbenchShape``; it passes on the optimizer's ``parameters_done_at``."""

    def parameters_done_at(self) -> dict[int, list[torch.Tensor]]:
        done_at = getattr(self.optimizer, "parameters_done_at", None)
        return done_at() if callable(done_at) else {}


class AirbenchShape:
    """Piecewise-linear lr multiplier: ``start`` -> 1 over the first ``warmup`` of the steps, then
    1 -> ``final`` at the last step. A class, not a closure, so LambdaLR's state_dict holds only
    these numbers.

    Starting at 0.2x rather than 0 skips a wasted near-zero-lr phase (whitening and BatchNorm
    already keep early steps stable); ending at 0.07x rather than 0 keeps the last steps useful.
    """

    def __init__(self, total_steps: int, warmup: float = WARMUP, start: float = START, final: float = FINAL) -> None:
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = int(warmup * self.total_steps)
        self.start, self.final = start, final

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.start + (1 - self.start) * step / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return 1 + (self.final - 1) * progress


def build_airbench_schedule(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup: float = WARMUP,
    start: float = START,
    final: float = FINAL,
) -> LRScheduler:
    """airbench94's schedule: ``start`` x lr rising linearly to lr over the first ``warmup`` of
    the steps (a fraction), then falling linearly to ``final`` x lr at the last step.

    It also tells an ``airbench_sgd`` optimizer the number of steps (for Lookahead and the
    whitening-bias cut-off).
    """
    refuse_spans(optimizer, "airbench")
    set_total_steps = getattr(optimizer, "set_total_steps", None)
    if callable(set_total_steps):
        set_total_steps(total_steps)
    return AirbenchLR(optimizer, AirbenchShape(total_steps, warmup, start, final))


# --------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------


@hookimpl
def register_models(register: Register) -> None:
    register(
        "airbench", build_airbench,
        description="airbench94 (Jordan 2024): whitened 2x2 stem, conv groups 64-256-256, GELU, "
        "frozen-scale BatchNorm, flip+shift TTA in eval; 94 % on CIFAR-10 in 10 epochs",
    )


@hookimpl
def register_optimizers(register: Register) -> None:
    register(
        "airbench_sgd", build_airbench_sgd,
        description="airbench94's Nesterov SGD: decoupled per-1024-example lr/wd, 64x BatchNorm-bias "
        "lr, Lookahead, whitening bias frozen early (use with the airbench schedule)",
        hyperparameters={"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY},  # the airbench94 recipe's
    )
    register(
        "airbench_muon", build_airbench_muon,
        description="airbench94_muon's optimizer: Muon for conv filters, Nesterov SGD for biases and "
        "the head, whitening bias decayed early; its rates assume the airbench94_muon recipe's model "
        "args and linear schedule",
        hyperparameters={"lr": MUON_LR, "momentum": MUON_MOMENTUM, "weight_decay": MUON_WEIGHT_DECAY},  # its recipe's
    )


@hookimpl
def register_schedules(register: Register) -> None:
    register(
        "airbench", build_airbench_schedule,
        description="airbench94's schedule: 0.2x -> 1x over 23 % of the steps, then down to 0.07x",
    )
