"""Stopping a run cleanly: the signals that end it after a checkpoint, and the flag they set."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

# The signals that stop a run after a checkpoint: Ctrl-C, kill (and schedulers), and a terminal
# or SSH session closing under a run started without nohup/tmux (SIGHUP, where it exists).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

INTERRUPTED = "Interrupted by Ctrl-C."

_ctrl_c_pressed = False
_ctrl_c_deferred = False


def remember_ctrl_c() -> None:
    """Make Ctrl-C raise KeyboardInterrupt as Python's own handler does, and remember that it came
    (an import can swallow the KeyboardInterrupt, and the command would go on as if no Ctrl-C had
    been pressed). Left as it is where SIGINT is ignored or already handled."""
    with contextlib.suppress(ValueError):  # not the main thread
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _ctrl_c)


def _ctrl_c(_signum: int, _frame: Any) -> None:
    global _ctrl_c_pressed
    again, _ctrl_c_pressed = _ctrl_c_pressed, True
    if not _ctrl_c_deferred or again:  # a second one stops at once: a plugin's import may hang
        raise KeyboardInterrupt


def ctrl_c_pressed() -> bool:
    """Whether a Ctrl-C came while ``remember_ctrl_c``'s handler was installed, swallowed or not."""
    return _ctrl_c_pressed


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Inside, a first Ctrl-C (under ``remember_ctrl_c``) is only remembered, and raised on the way
    out (a second is raised at once): for importing plugins, and torch with them. A
    KeyboardInterrupt in the middle of torch's import is swallowed at some moments, turned into an
    ImportError by a C extension at others (a plugin then "failed to load"), or aborts the process
    in pybind11 (a C++ terminate and a core dump)."""
    global _ctrl_c_deferred
    before, _ctrl_c_deferred = _ctrl_c_deferred, True
    try:
        yield
    finally:
        _ctrl_c_deferred = before
    if _ctrl_c_pressed:
        raise KeyboardInterrupt


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
        if ctrl_c_pressed():  # before training, and swallowed by an import: the user still asked to stop
            raise KeyboardInterrupt
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
