"""The types a plugin's factories return: data bundles, strategies and metric loggers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset


class Register(Protocol):
    """The callback a ``register_*`` hook receives."""

    def __call__(self, name: str, factory: Any, *, description: str = "", **metadata: Any) -> None: ...


class RegisterRecipe(Protocol):
    """The callback ``register_recipes`` receives: a name, what the recipe is, and config keys."""

    def __call__(self, name: str, *, description: str, measured: str = "", **config: Any) -> None: ...


@dataclass(frozen=True)
class DataInfo:
    """What a model and the user need to know about a data source."""

    num_classes: int
    input_shape: tuple[int, ...]  # one example's shape: (C, H, W) for images, (F,) for vectors
    class_names: tuple[str, ...]
    mean: tuple[float, ...] = ()  # per-channel mean of pixel values scaled to [0, 1]; () = none
    std: tuple[float, ...] = ()  # per-channel standard deviation, same units as mean

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names for {self.num_classes} classes"
            )
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std must have the same length")

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3


@dataclass
class TensorSplit:
    """A whole split held as tensors: the fast path, resident on the training device.

    ``images`` is uint8 pixels (N, C, H, W) (normalized with ``DataInfo.mean/std`` on the fly)
    or float features (N, ...) used as they are. ``labels`` is int64 (N,).
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"{self.images.shape[0]} images but {self.labels.shape[0]} labels"
            )
        if self.labels.dim() != 1:
            raise ValueError(f"TensorSplit labels must be one class index per example, shape (N,), not {tuple(self.labels.shape)}")
        dtype = self.labels.dtype
        if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:  # .long() would truncate 0.7 to 0
            raise ValueError(f"TensorSplit labels must be integer class indices, not {dtype}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def empty(cls, example_shape: tuple[int, ...], dtype: torch.dtype = torch.uint8) -> TensorSplit:
        """A split of no examples: what a data source returns for a split it was not asked for."""
        return cls(torch.empty((0, *example_shape), dtype=dtype), torch.empty(0, dtype=torch.int64))


# A Dataset yields (image, int label): uint8 pixels (C, H, W), which blitz augments and
# normalizes per batch with DataInfo.mean/std, or a float tensor used as it is.
Split = TensorSplit | Dataset


@dataclass
class DataBundle:
    """What a data source's factory returns. A factory that takes ``splits`` may leave out the
    splits not named there (``TensorSplit.empty``): ``blitz eval`` asks for ``("test",)``."""

    train: Split
    test: Split
    info: DataInfo
    files: list[Path] = field(default_factory=list)  # the files it read, for `blitz data verify`


class Strategy:
    """Where and how training runs. The base class is one process on one device.

    Subclasses override what differs: ``setup`` (process groups), ``wrap`` (DataParallel, DDP),
    and the collectives for several processes.
    """

    name = "base"
    rank = 0
    local_rank = 0
    world_size = 1

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    @property
    def is_main(self) -> bool:
        """Whether this process prints progress and writes files."""
        return self.rank == 0

    def setup(self) -> None:
        """Prepare the device (and process group); called once before the model is built."""

    def wrap(self, model: nn.Module) -> nn.Module:
        """Return the module that training calls (the model itself, or a parallel wrapper)."""
        return model

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all processes (the identity for one process)."""
        return tensor

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        return obj

    def barrier(self) -> None:
        """Wait until every process gets here."""

    def teardown(self) -> None:
        """Release the device and process group; called once, also after an error."""

    def describe(self) -> str:
        """One line for the log: the strategy and its device (``cpu``, not ``cpu on cpu``)."""
        return self.name if str(self.device) == self.name else f"{self.name} on {self.device}"


class MetricLogger(Protocol):
    """Receives one dict per logged event (a step or an epoch) and closes at the end."""

    def log(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class DirectGradients(Protocol):
    """A model's optional ``direct_gradients`` method: one training step's loss and gradients without autograd.

    Returns the batch's mean loss, with the gradients added to each parameter's ``.grad``, or None
    where it does not apply (the engine then runs ``loss_fn(model(inputs), labels).backward()``).
    """

    def __call__(self, inputs: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module) -> torch.Tensor | None: ...


def direct_gradients_of(model: nn.Module) -> DirectGradients | None:
    """The model's ``direct_gradients`` method, or None.

    Looked up on the class: wrappers such as ``torch.compile``'s forward attribute reads to the
    model they wrap, and DDP's gradient sync and compiled graphs need autograd's backward.
    """
    if not callable(getattr(type(model), "direct_gradients", None)):
        return None
    method: DirectGradients = model.direct_gradients  # type: ignore[assignment]
    return method
