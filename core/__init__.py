"""blitz: a plugin-based command-line framework for training image classifiers with PyTorch.

Plugins import what they need from here::

    from blitz import hookimpl, DataBundle, DataInfo, TensorSplit, Strategy
"""

__version__ = "0.1.0"

from blitz.components import DataBundle, DataInfo, MetricLogger, Register, Strategy, TensorSplit
from blitz.errors import BlitzError, DataError, DataNotFoundError, UsageError
from blitz.hookspecs import hookimpl

__all__ = [
    "BlitzError",
    "DataBundle",
    "DataError",
    "DataInfo",
    "DataNotFoundError",
    "MetricLogger",
    "Register",
    "Strategy",
    "TensorSplit",
    "UsageError",
    "__version__",
    "hookimpl",
]
