"""Keep freed memory in the process, so that a training step's fresh tensors do not page-fault.

glibc's malloc hands blocks over 128 KiB back to the operating system when they are freed
(``munmap``, or trimming the top of the heap), and a training step allocates its activations
and gradients afresh: every page of them then faults again on first touch. LeNet at batch 128
(the ``lenet_fast`` recipe) made ~2,000 page faults a step on a 2-core VM, where each costs a
few microseconds: 14.4 ms a step against 9.2-10.3 ms with freed blocks kept. This is what
jemalloc or tcmalloc, which PyTorch's CPU tuning guides suggest preloading, do too.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

# Blocks up to this come from the heap and are reused: lenet_fast's evaluation batch of 2,000
# makes 38 MiB activations. Where glibc refuses that (some versions allow 32 MiB at most), 32 MiB.
MMAP_THRESHOLDS = (64 << 20, 32 << 20)
TRIM_THRESHOLD = 256 << 20  # free memory at the heap's top kept for reuse, up to this
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)

# Where the user has chosen malloc's behaviour (glibc's own variables), blitz leaves it alone.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse freed blocks of up to 64 MiB instead of returning them to the OS.

    The process then holds on to its peak of such memory until it exits: freed blocks below
    the heap's top are never returned, and at its top up to 256 MiB stays. Called by every
    ``blitz`` command; for the Python API, call it once before training. Returns whether malloc
    was changed: not off glibc (macOS, Windows, musl), nor where the user set glibc's malloc
    variables (``MALLOC_TRIM_THRESHOLD_``..., ``GLIBC_TUNABLES=glibc.malloc.*``) or preloads
    another allocator (``LD_PRELOAD``).
    """
    if platform.libc_ver()[0] != "glibc" or user_chose_malloc(os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # Setting both also turns off glibc's own adjustment of them, which raises the mmap
    # threshold only to the largest block freed so far and still trims the heap's top.
    return any(mallopt(_M_MMAP_THRESHOLD, size) for size in MMAP_THRESHOLDS) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def user_chose_malloc(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` sets glibc's malloc variables or preloads an allocator."""
    return (
        any(name in environ for name in _USER_SETTINGS)
        or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")
        or "malloc" in environ.get("LD_PRELOAD", "")  # jemalloc, tcmalloc, mimalloc
    )
