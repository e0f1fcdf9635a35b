"""The tutorial's DataParallel demo ``Model``: one linear layer over flattened inputs."""

from __future__ import annotations

import math

import torch
from torch import nn

from blitz import Register, hookimpl


class LinearModel(nn.Module):
    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))


def build_linear(*, num_classes: int, input_shape: tuple[int, ...]) -> LinearModel:
    return LinearModel(math.prod(input_shape), num_classes)


@hookimpl
def register_models(register: Register) -> None:
    register("linear", build_linear, description="One linear layer over flattened inputs (the tutorial's DataParallel demo)")
