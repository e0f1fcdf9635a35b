"""The progress display: a rich bar per epoch with loss and images/s, silent off rank 0.

Off a terminal (a log file, a pipe, a batch job) there is no bar: a plain line every 30 s keeps
long epochs from looking hung, and short ones print only their epoch line.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PLAIN_EVERY = 30.0  # seconds between progress lines off a terminal


class EpochProgress:
    """One progress bar per epoch; ``enabled=False`` makes every call a no-op."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.bar = enabled and console.is_terminal  # a bar only makes sense on a terminal
        self._progress: Progress | None = None
        self._task = None
        self._epoch, self._epochs, self._total = 0, 0, 0
        self._last_line = 0.0

    def start(self, epoch: int, epochs: int, total_steps: int, done: int = 0) -> None:
        self._epoch, self._epochs, self._total = epoch, epochs, total_steps
        self._last_line = time.monotonic()
        if not self.bar:
            return
        self._progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            auto_refresh=False,  # a refresh thread would contend for the GIL with tiny training steps
        )
        self._last_refresh = 0.0
        self._progress.start()
        self._task = self._progress.add_task("train", total=total_steps, completed=done, stats="")

    def update(self, steps_done: int, loss: float, images_per_s: float) -> None:
        now = time.monotonic()
        if self._progress is None:
            if self.enabled and now - self._last_line >= PLAIN_EVERY:
                self._last_line = now
                self.console.print(
                    f"epoch {self._epoch}/{self._epochs}  step {steps_done:,}/{self._total:,}  "
                    f"loss {loss:.3f}  {images_per_s:,.0f} img/s",
                    highlight=False,
                )
            return
        if now - self._last_refresh < 0.25:  # at most four redraws a second
            return
        self._last_refresh = now
        stats = f"loss {loss:.3f} · {images_per_s:,.0f} img/s"
        self._progress.update(self._task, completed=steps_done, stats=stats, refresh=True)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
