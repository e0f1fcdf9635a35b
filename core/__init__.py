"""blitz: a plugin-based command-line framework for training image classifiers with PyTorch.

Plugins import what they need from here::

    from blitz import hookimpl, DataBundle, DataInfo, TensorSplit, Strategy

The names load on first use (PEP 562), so ``import blitz`` does not import torch: `blitz
--help`, `blitz runs` and `blitz show` start in a fraction of a second, and Ctrl-C while torch
loads is a clean stop.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BlitzError": "blitz.errors",
    "DataBundle": "blitz.components",
    "DataError": "blitz.errors",
    "DataInfo": "blitz.components",
    "DataNotFoundError": "blitz.errors",
    "MetricLogger": "blitz.components",
    "Register": "blitz.components",
    "RegisterRecipe": "blitz.components",
    "RunConfig": "blitz.config",
    "Strategy": "blitz.components",
    "TensorSplit": "blitz.components",
    "TrainingRun": "blitz.engine",
    "UsageError": "blitz.errors",
    "hookimpl": "blitz.hookspecs",
}

if TYPE_CHECKING:
    from blitz.components import DataBundle, DataInfo, MetricLogger, Register, RegisterRecipe, Strategy, TensorSplit
    from blitz.config import RunConfig
    from blitz.engine import TrainingRun
    from blitz.errors import BlitzError, DataError, DataNotFoundError, UsageError
    from blitz.hookspecs import hookimpl


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'blitz' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "BlitzError",
    "DataBundle",
    "DataError",
    "DataInfo",
    "DataNotFoundError",
    "MetricLogger",
    "Register",
    "RegisterRecipe",
    "RunConfig",
    "Strategy",
    "TensorSplit",
    "TrainingRun",
    "UsageError",
    "__version__",
    "hookimpl",
]
