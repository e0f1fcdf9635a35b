"""The errors blitz raises on purpose: each carries a one-line message and an exit code.

The CLI prints ``Error: <message>`` for any of them, with no traceback unless ``--debug``.
Exit code 2 means the user asked for something that cannot work (a usage error); 1 means
something went wrong while working (a runtime error).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any


def debug_requested() -> bool:
    """``$BLITZ_DEBUG`` set to anything but empty, 0, false, no or off (``BLITZ_DEBUG=0`` is off)."""
    return os.environ.get("BLITZ_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


class BlitzError(Exception):
    """Base class of the errors blitz reports to the user as one clear line."""

    exit_code = 1
    every_rank = False  # raised alike by every process of a ddp job: rank 0 alone says it


class FailedElsewhere(BlitzError):
    """Another process of this ddp job failed and said why: this one stops without a word."""

    def __init__(self, exit_code: int) -> None:
        super().__init__("")
        self.exit_code = exit_code


@contextlib.contextmanager
def same_on_every_rank() -> Iterator[None]:
    """Mark the errors raised inside as ``every_rank``: code that every process of a ddp job runs
    alike on the same inputs (building the model for the data) fails alike, and one line says it."""
    try:
        yield
    except BlitzError as exc:
        exc.every_rank = True
        raise


class UsageError(BlitzError):
    """The user asked for something that cannot work: fix the command or the config."""

    exit_code = 2


class ConfigError(UsageError):
    """A config value, file or flag is invalid."""


# What people coming from other tools type, and blitz's name for it
SYNONYMS = {"gpu": "cuda", "dp": "dataparallel", "distributed": "ddp", "fsdp": "ddp", "cifar": "cifar10"}


def natural_key(name: str) -> list[Any]:
    """Sort key that orders names as people count: ``resnet2`` before ``resnet18``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _squash(text: str) -> str:
    return text.lower().replace("-", "").replace("_", "")


def closest_name(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` most likely meant: the same but for case, '-' and '_'
    (``CIFAR10``, ``SGD``), a common synonym (``gpu``), or a close spelling (``resnt18``)."""
    known = list(known)
    by_squashed = {_squash(k): k for k in known}
    if _squash(name) in by_squashed:
        return by_squashed[_squash(name)]
    if SYNONYMS.get(name.lower()) in known:
        return SYNONYMS[name.lower()]
    prefix, _, rest = name.rpartition("/")
    if prefix and rest:  # 'timm/notamodel': the shared 'timm/' would make any 'timm/...' name look close
        family = {_squash(k[len(prefix) + 1:]): k for k in known if k.startswith(prefix + "/")}
        if family:
            close = difflib.get_close_matches(_squash(rest), list(family), n=1, cutoff=0.6)
            return family[close[0]] if close else None
    close = difflib.get_close_matches(_squash(name), list(by_squashed), n=1, cutoff=0.6)
    return by_squashed[close[0]] if close else None


def close_names(name: str, known: Iterable[str]) -> list[str]:
    """The known names ``name`` may have meant: every name it is the start of (``resnet``:
    ``resnet18``, ``resnet50``; ``vit``: ``vit_tiny_patch16_224``), else :func:`closest_name`'s
    one, if any."""
    known = list(known)
    start = _squash(name)
    exact = start in {_squash(k) for k in known}
    # A synonym is not an exact name: 'cifar' means cifar10, but starts cifar100 too; both are listed.
    if len(start.rpartition("/")[2]) >= 2 and not exact:  # one letter starts too much to be a hint
        starting = [k for k in known if _squash(k).startswith(start) and not k.endswith("/*")]
        if starting:  # a short start is too far from a long name for closest_name's spelling match
            return sorted(starting, key=natural_key)
    close = closest_name(name, known)
    return [close] if close else []


def _first_three(names: list[str]) -> str:
    """``'a', 'b', 'c' and 2 more``: a list kept to one line that does not hide its length."""
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(repr(n) for n in names[:3]) + more


class UnknownNameError(UsageError, KeyError):
    """A component name that no installed plugin registers."""

    SHOWN = 5  # names suggested at most: more would not read as one line

    def __init__(
        self, kind: str, name: str, known: Iterable[str], list_command: str, broken: Iterable[str] = (),
        skipped: Iterable[str] = (), unmatched: Iterable[str] = (),
    ) -> None:
        self.kind, self.name, self.list_command = kind, name, list_command
        self.known = sorted(known)
        self.broken = sorted(broken)  # plugins that failed to load: one of them may have registered it
        self.skipped = sorted(skipped)  # plugins BLITZ_LOAD_PLUGINS left out: the same
        self.unmatched = sorted(unmatched)  # names in BLITZ_LOAD_PLUGINS no plugin has (misspelt?)
        self.where, self.extra = "", ""
        self.suggested: str | None = None  # set by ``suggest``: a name close_names cannot find
        super().__init__(self._message(""))

    def _refresh(self) -> None:
        """The message again, after a method added to what it says."""
        self.args = (self._message(self.where),)

    def _message(self, where: str) -> str:
        names = self.suggestions()
        close = names[0] if len(names) == 1 else None
        hint = f" Did you mean '{close}'?" if close else ""
        list_command = self.list_command
        if len(names) > 1:
            shown = ", ".join(repr(n) for n in names[:self.SHOWN])
            hint = f" Did you mean one of {shown}{', ...' if len(names) > self.SHOWN else ''}?"
            if len(names) > self.SHOWN:  # 'blitz list models resnet' lists the rest (a plain word: a substring)
                list_command += f" {self.name}"
        if self.broken:
            hint += (f" (Plugin(s) {_first_three(self.broken)} had problems loading or registering "
                     "and may be what registers it: see 'blitz list-plugins'.)")
        left_out = [f"leaves out plugin(s) {_first_three(self.skipped)}"] if self.skipped else []
        if self.unmatched:
            left_out.append(f"names {_first_three(self.unmatched)}, which no plugin has")
        if left_out:
            hint += f" (BLITZ_LOAD_PLUGINS {' and '.join(left_out)}.)"
        hint += self.extra
        if close and close.endswith("/*"):  # a family: not a name to type as it is
            family = close[:-1]
            return (f"Unknown {self.kind} '{self.name}'{where}. Did you mean '{family}<name>'? "
                    f"'{self.list_command} {family}' lists the names.")
        return f"Unknown {self.kind} '{self.name}'{where}.{hint} See '{list_command}'."

    def suggestions(self) -> list[str]:
        """The names this error suggests: one, several (``resnet`` starts them all), or none."""
        return [self.suggested] if self.suggested else close_names(self.name, self.known)

    def suggest(self, name: str | None) -> None:
        """Suggest ``name`` where no close spelling was found (a family's member, say)."""
        if name and not close_names(self.name, self.known):
            self.suggested = name
            self._refresh()

    def came_from(self, source: str) -> None:
        """Say where the bad name was written (a config file, a recipe), right after the name."""
        self.where = f" (from {source})"
        self._refresh()

    def note_plugins(self, broken: Iterable[str], skipped: Iterable[str], unmatched: Iterable[str]) -> None:
        """Name the plugins that may be what registers the name (failed, left out, misspelt)."""
        self.broken, self.skipped, self.unmatched = sorted(broken), sorted(skipped), sorted(unmatched)
        self._refresh()

    def add_hint(self, hint: str) -> None:
        """One more sentence of what may be wrong (a run's plugin that is not loaded now)."""
        if hint:
            self.extra += f" {hint}"
            self._refresh()

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataNotFoundError(UsageError):
    """A data source's files are not where the user pointed."""


class DataError(BlitzError):
    """A data source's files exist but are corrupt, truncated or inconsistent."""


class IncompatibleError(UsageError):
    """Two components that cannot work together (a model that does not fit the data)."""


class StrategyUnavailableError(UsageError):
    """The requested device strategy cannot run on this machine."""


class CheckpointError(BlitzError):
    """A checkpoint that is missing, damaged, or of another version."""

    def __init__(self, message: str, *, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged  # unreadable (cut short, not a checkpoint): another file may serve


class PluginError(BlitzError):
    """A plugin that failed to load, or broke a rule of the plugin contract."""


class TrainingDivergedError(BlitzError):
    """The loss became NaN or infinite."""

    every_rank = True  # the losses it reads are the whole job's, reduced over the ranks


class OutputError(BlitzError):
    """The run directory cannot be written."""


class Interrupted(BlitzError):
    """Training stopped on Ctrl-C or SIGTERM after saving a resumable checkpoint."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number
