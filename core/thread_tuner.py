"""``--cpu-threads auto``: train on whichever of 1 or 2 CPU threads is faster now, by timing.

At the small batches of the tutorial (4 images) a second thread makes LeNet's step ~15 % faster
while the other core is idle, and 17 % to 3.4x slower while other work keeps it busy: on a shared
machine neither count is right for a whole run. So the tuner times windows of steps (32, or
fewer where they take over 50 ms) at each count, trains on the faster, and tries the other
again now and then: at first after ``HOLD_WINDOWS`` windows, four times as late after each try
that confirms the choice (up to ``MAX_HOLD_WINDOWS``), since every try of the slower count
costs; and at once when the chosen count's windows slow down (two in a row: other work started).

Where a model's step gives the same bits on 1 or 2 threads, as LeNet's CPU step does (tested),
the choice changes nothing but the speed; elsewhere the last bits of a run's weights may depend
on the counts chosen.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable

import torch

WINDOW_STEPS = 32  # ~13-40 ms of LeNet's batch-4 steps: long enough to time, short enough to adapt
TRY_STEPS = 16  # a try of the other count: short, as it is often the slow one (3x when the other core is busy)
# ... or as many steps as fill this time, where steps are long: at batch 128 (lenet_fast, ~12 ms
# a step) 32 steps made the run's start spend ~100 steps on one thread, 1.7x slower there.
WINDOW_SECONDS, TRY_SECONDS = 0.05, 0.025
MIN_WINDOW_STEPS = 2  # a window times at least two steps, however long
TRY_CHECK_STEPS = 4  # ... and cut shorter still where its first steps are already far slower
HOLD_WINDOWS = 2  # windows at the chosen count before the first try, and after a switch
MAX_HOLD_WINDOWS = 256  # ~3-10 s of LeNet's batch-4 steps, ~13 s of longer ones
SLOWDOWN = 1.5  # a window this much slower than the chosen count's recent best: try the other now


class ThreadTuner:
    """Chooses PyTorch's intra-op thread count between two, ``counts``, while training.

    The engine calls ``start`` when an epoch's steps begin and ``after_step`` after each step.
    ``take_steps_at`` gives the steps trained at each count, for the run's record.
    """

    def __init__(self, counts: tuple[int, int] = (1, 2), clock: Callable[[], float] = time.perf_counter) -> None:
        self.counts = tuple(sorted(counts))
        self.chosen = self.counts[0]  # the fewer first: a wrong guess costs ~15 % there, 3x the other way
        self.current = self.chosen  # the count of the window under way: the chosen one, or a try
        self.steps_at: dict[int, int] = dict.fromkeys(self.counts, 0)
        self._clock = clock
        self._recent: deque[float] = deque(maxlen=3)  # the chosen count's last windows, s per image
        self._hold = HOLD_WINDOWS
        self._held = 0  # windows at the chosen count since the last try
        self._try_after_slowdown = False
        self._slow_window = False  # the last window at the chosen count was far slower than its best
        self._steps = self._images = 0
        self._window_start = 0.0
        self._timed = False
        self._untimed_steps = 0

    def start(self) -> None:
        """Steps begin (again): train at the chosen count; the first window is warm-up, untimed."""
        self._set(self.chosen)
        self._timed = False
        self._untimed_steps = 0
        self._restart_window()

    def after_step(self, images: int) -> None:
        """A step of ``images`` is done: time the window, and switch the count where it is due."""
        self.steps_at[self.current] += 1
        if self._untimed_steps:  # a try's first step: waking the thread pool, not its speed
            self._untimed_steps -= 1
            self._restart_window()
            return
        self._steps += 1
        self._images += images
        trying = self.current != self.chosen
        if trying and self._steps == TRY_CHECK_STEPS and self._timed and self._far_slower(self._seconds_per_image()):
            self._end_try(faster=False)
            return
        most_steps, most_seconds = (TRY_STEPS, TRY_SECONDS) if trying else (WINDOW_STEPS, WINDOW_SECONDS)
        if self._steps < most_steps and (
            self._steps < MIN_WINDOW_STEPS or self._clock() - self._window_start < most_seconds
        ):
            return
        if self._timed:
            self._window_done(self._seconds_per_image())
        self._timed = True
        self._restart_window()

    def take_steps_at(self) -> dict[int, int]:
        """The steps trained at each count since the last call."""
        taken, self.steps_at = self.steps_at, dict.fromkeys(self.counts, 0)
        return taken

    def _seconds_per_image(self) -> float:
        return (self._clock() - self._window_start) / self._images

    def _restart_window(self) -> None:
        self._steps = self._images = 0
        self._window_start = self._clock()

    def _far_slower(self, seconds_per_image: float) -> bool:
        return len(self._recent) >= 2 and seconds_per_image > SLOWDOWN * min(self._recent)

    def _window_done(self, seconds_per_image: float) -> None:
        if self.current != self.chosen:
            self._end_try(faster=seconds_per_image < statistics.median(self._recent), seconds_per_image=seconds_per_image)
            return
        far_slower = self._far_slower(seconds_per_image)
        # Two slow windows in a row: the load changed (a lone one is a hiccup: a preemption, a
        # collection; kept out of the record, or the next try would be judged against it)
        slowed, self._slow_window = far_slower and self._slow_window, far_slower and not self._slow_window
        if self._slow_window:
            return
        if slowed:  # judge the other count against the chosen one's speed now
            self._recent.clear()
        self._recent.append(seconds_per_image)
        self._held += 1
        if slowed or (self._held >= self._hold and len(self._recent) >= 2):
            self._try_after_slowdown = slowed
            self._set(next(n for n in self.counts if n != self.chosen))  # try the other
            self._untimed_steps = 1

    def _end_try(self, faster: bool, seconds_per_image: float = 0.0) -> None:
        if faster:  # the other count is the faster now
            self.chosen = self.current
            self._recent.clear()
            self._recent.append(seconds_per_image)
            self._hold = HOLD_WINDOWS
        elif not self._try_after_slowdown:  # confirmed: try again four times as late
            self._hold = min(4 * self._hold, MAX_HOLD_WINDOWS)
        self._held = 0
        self._set(self.chosen)
        self._restart_window()

    def _set(self, count: int) -> None:
        self.current = count
        torch.set_num_threads(count)
