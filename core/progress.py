"""The progress display: a rich bar per epoch with loss and images/s, silent off rank 0.

Off a terminal (a log file, a pipe, a batch job) there is no bar: a plain line at every tenth of
an epoch's steps, as the tutorial prints its running loss, and every 30 s in between, so that a
long epoch does not look hung. On a narrow terminal the bar gives up its graphic, then the time
elapsed, before the figures. The images/s shown is smoothed over the last few seconds; the
epoch's own line (engine.py) gives its exact figure.
"""

from __future__ import annotations

import math
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PLAIN_EVERY = 30.0  # seconds between progress lines off a terminal, at most
PLAIN_PARTS = 10  # ... and one at each tenth of an epoch's steps
# images/s shown: an average over about the last 3 s, as the rate of one log window (50 steps,
# ~20 ms at batch 4) ranged from 114 to 4,445 within an epoch on a shared 2-core machine
SMOOTHING_S = 3.0


class SmoothedRate:
    """A rate averaged over time: each window's rate weighs as long as the window lasted, and a
    window ``seconds`` older weighs 1/e as much (an exponential moving average over time)."""

    def __init__(self, seconds: float = SMOOTHING_S) -> None:
        self.seconds = seconds
        self.value: float | None = None
        self._since = 0.0

    def start(self, now: float) -> None:
        """Forget the rates so far (a new epoch): the next window's rate is taken as it is."""
        self.value, self._since = None, now

    def add(self, rate: float, now: float) -> float:
        """Take the rate of the window that ended at ``now``; returns the smoothed rate."""
        weight = 1.0 - math.exp(-max(now - self._since, 0.0) / self.seconds)
        self.value = rate if self.value is None else self.value + weight * (rate - self.value)
        self._since = now
        return self.value


class EpochProgress:
    """One progress bar per epoch; ``enabled=False`` makes every call a no-op."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.bar = enabled and console.is_terminal  # a bar only makes sense on a terminal
        self._progress: Progress | None = None
        self._task = None
        self._epoch, self._epochs, self._total = 0, 0, 0
        self._last_line = self._last_refresh = 0.0
        self._next_mark = 0  # the step count of the next plain line
        self._rate = SmoothedRate()

    def start(self, epoch: int, epochs: int, total_steps: int, done: int = 0) -> None:
        self._epoch, self._epochs, self._total = epoch, epochs, total_steps
        self._last_line = time.monotonic()
        self._rate.start(self._last_line)
        self._next_mark = self._mark_after(done)
        if not self.bar:
            return
        width = self.console.width  # ~105 columns for everything; figures first where fewer
        columns: list[ProgressColumn] = [TextColumn(f"epoch {epoch}/{epochs}")]
        if width >= 80:
            columns.append(BarColumn(bar_width=min(40, width - 70)))
        columns += [TextColumn("{task.completed:,.0f}/{task.total:,.0f}"), TextColumn("{task.fields[stats]}")]
        if width >= 72:
            columns.append(TimeElapsedColumn())
        columns.append(TimeRemainingColumn())
        self._progress = Progress(
            *columns,
            console=self.console,
            transient=True,
            auto_refresh=False,  # a refresh thread would contend for the GIL with tiny training steps
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=total_steps, completed=done, stats="")

    def update(self, steps_done: int, loss: float, images_per_s: float) -> None:
        """Show the progress after a log window: ``images_per_s`` is that window's rate."""
        now = time.monotonic()
        images_per_s = self._rate.add(images_per_s, now)  # every window, also those not drawn
        if self._progress is None:
            # (not at the epoch's end: its own line follows)
            if self.enabled and steps_done < self._total and (steps_done >= self._next_mark or now - self._last_line >= PLAIN_EVERY):
                self._last_line, self._next_mark = now, self._mark_after(steps_done)
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

    def _mark_after(self, steps_done: int) -> int:
        """The next tenth of the epoch's steps after ``steps_done`` (not its end: the epoch line says that)."""
        part = max(self._total // PLAIN_PARTS, 1)
        mark = (steps_done // part + 1) * part
        return mark if mark < self._total else self._total + 1

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
