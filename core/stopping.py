"""Stopping a run cleanly: the signals that end it after a checkpoint, and the flag they set."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

# The signals that stop a run after a checkpoint: Ctrl-C, kill (and schedulers), and a terminal
# or SSH session closing under a run started without nohup/tmux (SIGHUP, where it exists).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class StopRequest:
    """Set by SIGINT/SIGTERM/SIGHUP (or a caller); the loop finishes its step, checkpoints and stops."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    def __call__(self, signum: int, _frame: Any = None) -> None:
        if self.signal_number is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        if self.signal_number is None:  # the first says why: under torchrun a Ctrl-C is followed by its SIGTERM
            self.signal_number = signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {}
        try:
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) is signal.SIG_IGN:  # `nohup` (SIGHUP), `cmd &` in a script (SIGINT): left ignored
                    continue
                previous[sig] = signal.signal(sig, self)
        except ValueError:  # not the main thread: signals stay as they are
            pass
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
