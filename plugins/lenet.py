"""LeNet as in the 60-minute blitz: two 5x5 convolutions with max-pooling, three linear layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module_hooks

from blitz import Register, UsageError, hookimpl
from blitz.plugins import lenet_cpu_kernel


class LeNet(nn.Module):
    """The tutorial's ``Net``, generalized to any input channels, size and number of classes."""

    def __init__(
        self, *, num_classes: int = 10, in_chans: int = 3, image_size: int = 32, width: int = 1,
        fused_cpu_step: bool = True,
    ) -> None:
        super().__init__()
        self.fused_cpu_step = fused_cpu_step  # hand-written kernels, the same math, on CPUs (see lenet_cpu_kernel)
        self._gradient_buffers = lenet_cpu_kernel.GradientBuffers()  # where direct_gradients writes
        c1, c2 = 6 * width, 16 * width
        self.conv1 = nn.Conv2d(in_chans, c1, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"LeNet needs images of at least 16x16 pixels, got {image_size}x{image_size}")
        self.flat_features = c2 * side * side
        self.fc1 = nn.Linear(self.flat_features, 120 * width)
        self.fc2 = nn.Linear(120 * width, 84 * width)
        self.fc3 = nn.Linear(84 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.fused_cpu_step:
            params = self._layer_params()
            if lenet_cpu_kernel.usable(x, params):
                return lenet_cpu_kernel.LeNetTrainStep.apply(x, *params)
        elif not self.training and x.is_cpu and x.dim() == 4 and x.shape[0] > lenet_cpu_kernel.SMALL_BATCH:
            # Evaluation on a CPU: oneDNN's channels-last convolutions and max-pools are ~2x
            # faster at batch 1000 than NCHW (whose max-pool mispredicts a branch every other
            # comparison), and give the same numbers (tested; the same bits on the Xeon measured).
            x = x.contiguous(memory_format=torch.channels_last)
        # ReLU after the pool, not before as the tutorial writes it: the same numbers and
        # gradients (ReLU is monotonic; tested; only a window whose largest value is -0.0 gives
        # +0.0 instead), on a quarter of the values: ~5 % of a step at batch 128. (A forward
        # hook on `pool` sees values before their ReLU.)
        x = F.relu(self.pool(self.conv1(x)))
        x = F.relu(self.pool(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)

    def direct_gradients(self, inputs: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module) -> torch.Tensor | None:
        """The batch's loss, its gradients put into ``.grad`` without autograd; None where that does not apply.

        blitz's engine calls this instead of ``loss_fn(model(inputs), labels).backward()`` (see
        docs/plugins.md). It applies where the fused step does, to LeNet's own ``forward`` (not a
        subclass's), for plain mean cross-entropy over class indices, and only while nothing
        would notice autograd's absence: anything else (label smoothing, class weights,
        probability targets, a hook on this module, its parameters, the loss or all modules)
        returns None and goes through autograd.
        """
        if not (
            self.training and self.fused_cpu_step and type(self).forward is LeNet.forward
            and _plain_cross_entropy(loss_fn) and labels.dim() == 1 and not labels.is_floating_point()
        ):
            return None
        params = self._layer_params()
        if not lenet_cpu_kernel.usable(inputs, params) or self._hooked(params, loss_fn):
            return None
        return lenet_cpu_kernel.cross_entropy_gradients(inputs, labels, params, self._gradient_buffers, loss_fn.ignore_index)

    def _hooked(self, params: tuple[torch.Tensor, ...], loss_fn: nn.Module) -> bool:
        """Whether a hook would run in autograd's step: on this module, the loss, any module, or a parameter."""
        if (
            self._forward_hooks or self._forward_pre_hooks or self._backward_hooks or self._backward_pre_hooks
            or loss_fn._forward_hooks or loss_fn._forward_pre_hooks or _module_hooks._has_any_global_hook()
        ):
            return True
        # With every parameter frozen autograd refuses the backward; leave that error to it.
        return not any(p.requires_grad for p in params) or any(
            p._backward_hooks or p._post_accumulate_grad_hooks for p in params
        )

    def _layer_params(self) -> tuple[torch.Tensor, ...]:
        """Weight and bias of each layer in order, read from the module dicts directly.

        Called every step: ``self.conv1.weight`` goes through ``nn.Module.__getattr__`` twice,
        and ten of those cost ~10 us, over 1 % of a batch-4 step.
        """
        c1, c2, f1, f2, f3 = (self._modules[name]._parameters for name in ("conv1", "conv2", "fc1", "fc2", "fc3"))
        return (c1["weight"], c1["bias"], c2["weight"], c2["bias"], f1["weight"], f1["bias"],
                f2["weight"], f2["bias"], f3["weight"], f3["bias"])


def _plain_cross_entropy(loss_fn: nn.Module) -> bool:
    return (
        type(loss_fn) is nn.CrossEntropyLoss and loss_fn.weight is None and loss_fn.reduction == "mean"
        and loss_fn.label_smoothing == 0.0
    )


def build_lenet(
    *, num_classes: int, input_shape: tuple[int, ...], width: int = 1, fused_cpu_step: bool = True
) -> LeNet:
    """LeNet for ``input_shape`` (C, H, W); ``width`` multiplies every layer's width.

    ``fused_cpu_step`` trains small CPU batches through hand-written kernels with the same math
    (without autograd at all in blitz's engine: ``LeNet.direct_gradients``).
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise UsageError(f"Model 'lenet': --model-arg width must be a whole number of at least 1, got {width!r}.")
    if not isinstance(fused_cpu_step, bool):
        raise UsageError(f"Model 'lenet': --model-arg fused_cpu_step must be true or false, got {fused_cpu_step!r}.")
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise ValueError(f"LeNet takes square images (C, H, W), not inputs of shape {tuple(input_shape)}")
    return LeNet(
        num_classes=num_classes, in_chans=input_shape[0], image_size=input_shape[1], width=width,
        fused_cpu_step=fused_cpu_step,
    )


@hookimpl
def register_models(register: Register) -> None:
    register("lenet", build_lenet, description="The tutorial's LeNet: 2 conv + 3 linear layers, 62k parameters")
