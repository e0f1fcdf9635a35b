"""Flushing denormal floats to zero while a CPU run trains.

A float32 below ~1.2e-38 is stored as a denormal, and x86 CPUs take 10-100x longer for
arithmetic on one. Training makes them: a momentum buffer whose gradient is exactly zero for a
while (a ReLU feature that is off for the whole batch, as often at the tutorial's batch of 4)
decays by 0.9 a step, reaching denormals after ~800 steps. Measured on a 2-core Xeon: SGD's
update of LeNet took 270 us a step with them, 25 us without. With the CPU's flush-to-zero and
denormals-are-zero modes set, such values count as 0; no value a model could notice changes
(a weight near 0.01 cannot move by 1e-38 in float32).

PyTorch sets both modes per thread (``torch.set_flush_denormal``); threads the CPU's thread pool
starts later copy them. They are put back as found after the run: a notebook that trains keeps
its own arithmetic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_DENORMAL = 1e-39  # a float32 denormal (the smallest normal float32 is ~1.18e-38)


def denormals_flushed() -> bool:
    """Whether this thread's CPU arithmetic flushes denormals to zero now (torch has no getter)."""
    return torch.tensor([_DENORMAL]).mul_(1.0).item() == 0.0


@contextlib.contextmanager
def flushing_denormals(enabled: bool = True) -> Iterator[None]:
    """Denormals flushed to zero inside (where the CPU can; a no-op where ``enabled`` is False),
    and the mode as it was after."""
    before = denormals_flushed() if enabled else None
    if enabled:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if before is False:
            torch.set_flush_denormal(False)
