"""airbench-style timing: the summed duration of stretches of work, measured where it runs."""

from __future__ import annotations

import time
from typing import Any

import torch


class Clock:
    """Summed duration of stretches of work (``resume`` ... ``pause``): CUDA events on a GPU, where
    the work is asynchronous and a host timer would measure only the launches; else perf_counter."""

    def __init__(self, device: torch.device, earlier: float = 0.0) -> None:
        self.cuda = device.type == "cuda"
        self.earlier = earlier  # seconds timed before (a resumed run's earlier sessions)
        self.spans: list[tuple[Any, Any]] = []
        self.started: Any = None

    def _now(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def resume(self) -> None:
        if self.started is None:
            self.started = self._now()

    def pause(self) -> None:
        if self.started is not None:
            self.spans.append((self.started, self._now()))
            self.started = None

    def total(self) -> float:
        """Seconds in all stretches so far, ``earlier`` included (waits for the GPU to finish them)."""
        self.pause()
        if not self.cuda:
            return self.earlier + sum(end - start for start, end in self.spans)
        if self.spans:
            self.spans[-1][1].synchronize()
        return self.earlier + sum(start.elapsed_time(end) for start, end in self.spans) / 1000
