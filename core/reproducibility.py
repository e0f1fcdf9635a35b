"""Seeds and random state: the same run twice gives the same weights (and a resumed run the
same batches as an uninterrupted one)."""

from __future__ import annotations

import os
import random
from typing import Any

import torch


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic and device.type == "cuda":
        # cuBLAS needs this workspace setting for deterministic matmuls.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        return
    # Turned off, so that an earlier deterministic run in this process (blitz used as a library)
    # does not carry over; only when on, as the call imports torch._inductor (~1 s of every
    # run's start). CPU kernels are already run-to-run deterministic for a fixed thread count.
    if torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(False)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # The run may resume with fewer GPUs visible than it was saved with.
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
