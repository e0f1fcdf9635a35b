"""Checks of a component's options (``--model-arg``, ``--optimizer-arg``, ``--schedule-arg``, ...).

A factory raises ``ValueError`` for a value it cannot use; blitz turns that into one usage error
naming the component and its options. These helpers word it the same way everywhere, and catch
values of the wrong type, which would otherwise fail later (a step into the training), or never
(a negative learning-rate multiplier trains uphill without an error).
"""

from __future__ import annotations

import math
from typing import Any


def check_flag(name: str, value: Any) -> None:
    """Refuse an option that is not true or false, by name."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def check_optional_flag(name: str, value: Any) -> None:
    """Refuse an option that is not true, false or unset (None: blitz decides)."""
    if value is not None:
        check_flag(name, value)


def check_fraction(name: str, value: Any, *, zero_allowed: bool) -> None:
    """Refuse an option that is not a fraction of the run: a number up to 1, above (or from) 0."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and (0 <= value if zero_allowed else 0 < value) and value <= 1):  # nan fails too
        raise ValueError(f"{name} must be a number {'>=' if zero_allowed else '>'} 0 and <= 1, got {value!r}")


def check_option(name: str, value: Any, low: float, high: float | None = None, *, whole: bool = False) -> None:
    """Refuse an option that is not a number in [low, high) (a whole number if ``whole``), by name."""
    kinds = (int,) if whole else (int, float)
    if not whole and isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            raise ValueError(f"{name} must be a number, got one of {len(str(value))} digits") from None
    if isinstance(value, bool) or not isinstance(value, kinds) or (isinstance(value, float) and not math.isfinite(value)) \
            or value < low or (high is not None and value >= high):
        kind = "a whole number" if whole else "a number"
        bounds = f">= {low:g}" + (f" and < {high:g}" if high is not None else "")
        raise ValueError(f"{name} must be {kind} {bounds}, got {value!r}")
