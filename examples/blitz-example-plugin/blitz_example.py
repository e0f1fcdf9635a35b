"""blitz-example-plugin: a synthetic ``stripes`` data source, a ``tiny_cnn`` model, and a log line per epoch.

Everything here comes from blitz's public API (``from blitz import ...``); see docs/plugins.md.

``stripes`` images show sine-wave stripes in one of four orientations (the class) with a random
period, phase, tint and pixel noise, so a small conv net learns them in a couple of epochs
while a model that ignores the image stays at chance (25 %).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from blitz import DataBundle, DataInfo, TensorSplit, UsageError, hookimpl

CLASS_NAMES = ("horizontal", "vertical", "diagonal", "antidiagonal")
# Direction of the stripes' wave vector, degrees: horizontal stripes vary along y, and so on.
ANGLES = (90.0, 0.0, 45.0, 135.0)
LOG_NAME = "example-plugin.log"


def make_stripes(
    n: int, *, image_size: int, noise: float, generator: torch.Generator
) -> TensorSplit:
    """``n`` uint8 (n, 3, image_size, image_size) stripe images with balanced int64 labels."""
    labels = torch.arange(n) % len(CLASS_NAMES)
    labels = labels[torch.randperm(n, generator=generator)]
    angle = torch.tensor(ANGLES)[labels] + (torch.rand(n, generator=generator) - 0.5) * 20  # +-10 degrees
    theta = torch.deg2rad(angle).view(n, 1, 1)
    period = 3.0 + 5.0 * torch.rand(n, 1, 1, generator=generator)  # pixels per stripe pair
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=generator)
    coords = torch.arange(image_size, dtype=torch.float32)
    y, x = coords.view(1, -1, 1), coords.view(1, 1, -1)
    wave = torch.sin(2 * math.pi * (x * torch.cos(theta) + y * torch.sin(theta)) / period + phase)
    contrast = 0.1 + 0.3 * torch.rand(n, 3, 1, 1, generator=generator)  # per image and channel: a tint
    pixels = 0.5 + contrast * wave.unsqueeze(1)  # in [0.1, 0.9] before noise
    pixels = pixels + noise * torch.randn(pixels.shape, generator=generator)
    images = (pixels.clamp(0, 1) * 255).round().to(torch.uint8)
    return TensorSplit(images, labels)


def load_stripes(
    *,
    root: Path | None = None,
    download: bool = False,
    length: int = 2000,
    test_length: int = 500,
    image_size: int = 32,
    noise: float = 0.2,
    seed: int = 0,
) -> DataBundle:
    """``length`` training and ``test_length`` test images; ``noise`` is the pixel noise std in [0, 1] units.

    Synthetic, so ``root`` and ``download`` are ignored (every data source receives them). A bad
    option raises :class:`blitz.UsageError`: the CLI shows it as one line and exits with 2.
    """
    if length < 1 or test_length < 1:
        raise UsageError(f"stripes: length and test_length must be at least 1, got {length} and {test_length}")
    if image_size < 8:
        raise UsageError(f"stripes: image_size must be at least 8 pixels, got {image_size}")
    g = torch.Generator().manual_seed(seed)
    train = make_stripes(length, image_size=image_size, noise=noise, generator=g)
    test = make_stripes(test_length, image_size=image_size, noise=noise, generator=g)
    scaled = train.images.float() / 255  # DataInfo mean/std are in [0, 1] pixel units
    info = DataInfo(
        num_classes=len(CLASS_NAMES),
        input_shape=(3, image_size, image_size),
        class_names=CLASS_NAMES,
        mean=tuple(scaled.mean(dim=(0, 2, 3)).tolist()),
        std=tuple(scaled.std(dim=(0, 2, 3)).tolist()),
    )
    return DataBundle(train=train, test=test, info=info)


class TinyCNN(nn.Module):
    """Three 3x3 conv blocks (width, 2x, 4x channels), global average pooling, one linear layer."""

    def __init__(self, in_chans: int, num_classes: int, width: int) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_chans, width), nn.MaxPool2d(2),
            *block(width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_tiny_cnn(*, num_classes: int, input_shape: tuple[int, ...], width: int = 16) -> TinyCNN:
    """A TinyCNN for images of ``input_shape`` (C, H, W); ``width`` is the first block's channels."""
    if len(input_shape) != 3:
        raise UsageError(f"tiny_cnn takes images (C, H, W), not inputs of shape {tuple(input_shape)}")
    if width < 1:
        raise UsageError(f"tiny_cnn: width must be at least 1, got {width}")
    return TinyCNN(input_shape[0], num_classes, width)


@hookimpl
def register_datasets(register):
    register(
        "stripes", load_stripes,
        description="Synthetic stripes in 4 orientations (horizontal, vertical, 2 diagonals), 3x32x32 uint8",
        reads_data_root=False,  # synthetic: blitz warns where --data-root is given for it
    )


@hookimpl
def register_models(register):
    register("tiny_cnn", build_tiny_cnn, description="A small 3-block conv net (24k parameters at width 16)")


@hookimpl
def register_recipes(register):
    register(
        "stripes_quick", description="tiny_cnn at width 8 on 480 16x16 stripes, 2 epochs of Adam (seconds on a CPU)",
        measured="above 60 % test accuracy (chance: 25 %) in the example's tests, on a CPU",
        dataset="stripes", model="tiny_cnn", optimizer="adam", lr=0.01, epochs=2, batch_size=32,
        model_args={"width": 8}, dataset_args={"length": 480, "test_length": 200, "image_size": 16},
    )


@hookimpl
def on_epoch_end(run, epoch: int, metrics: dict[str, Any]) -> None:
    """Append one line per epoch to ``<run_dir>/example-plugin.log`` (nothing when no run dir)."""
    if run.run_dir is None or metrics["test_accuracy"] is None:  # no run dir, or not evaluated
        return
    line = f"epoch {epoch} test_accuracy {metrics['test_accuracy']:.4f} model {run.config.model}\n"
    with open(Path(run.run_dir) / LOG_NAME, "a", encoding="utf-8") as log:
        log.write(line)
