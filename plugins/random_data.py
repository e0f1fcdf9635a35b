"""The tutorial's RandomDataset: random tensors, for demos and for timing without real data."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from blitz import DataBundle, DataInfo, Register, TensorSplit, hookimpl
from blitz.options import check_option


def load_random(
    *,
    root: Path | None = None,
    download: bool = False,
    shape: list[int] | tuple[int, ...] = (3, 32, 32),
    length: int = 1000,
    test_length: int = 200,
    num_classes: int = 10,
    seed: int = 0,
) -> DataBundle:
    """``length`` training and ``test_length`` test examples of ``shape``, with random labels.

    Image shapes (C, H, W) give uint8 pixels; other shapes give standard-normal floats, as in
    the tutorial's ``RandomDataset(size, length)`` (``shape = [5]`` reproduces it).
    """
    if not isinstance(shape, (list, tuple)) or not shape or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape
    ):
        raise ValueError(f"shape must be a list of whole numbers >= 1, like [3, 32, 32] or [5], got {shape!r}")
    shape = tuple(shape)
    for name, value, low in (("length", length, 1), ("test_length", test_length, 1), ("num_classes", num_classes, 2)):
        check_option(name, value, low, whole=True)
    check_option("seed", seed, 0, whole=True)
    if download is True:  # asked for in vain: say so rather than ignore it
        warnings.warn("--download has nothing to fetch for the random data source: it makes its data", stacklevel=2)
    if seed >= 2**64:  # torch's generators take 64 bits
        raise ValueError(f"seed must be below 2**64, got {seed}")
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> TensorSplit:
        if len(shape) == 3:
            images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)
        else:
            images = torch.randn((n, *shape), generator=g)
        return TensorSplit(images, torch.randint(0, num_classes, (n,), generator=g))

    is_image = len(shape) == 3
    info = DataInfo(
        num_classes=num_classes,
        input_shape=shape,
        class_names=tuple(f"class{i}" for i in range(num_classes)),
        mean=(0.5,) * shape[0] if is_image else (),
        std=(0.5,) * shape[0] if is_image else (),
    )
    return DataBundle(train=split(length), test=split(test_length), info=info)


@hookimpl
def register_datasets(register: Register) -> None:
    register("random", load_random, description="Random tensors of a configurable shape (the tutorial's RandomDataset)",
             reads_data_root=False)
