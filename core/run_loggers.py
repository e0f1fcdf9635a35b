"""The run's metric loggers, each guarded: a logger plugin's bug must not end a run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from blitz.build import Components, call_factory, call_with_options, check_returned, plugin_bug
from blitz.config import RunConfig


class GuardedLogger:
    """A logger plugin's ``log``/``close``, each protected: a logger's bug must not end hours of
    training (nor keep the loggers after it from closing). It gets no more records after its
    first error, but is still closed once (what it wrote so far is flushed there)."""

    def __init__(self, name: str, plugin: str, logger: Any, warn: Callable[[list[str]], None]) -> None:
        self.name, self.plugin, self.logger, self.warn = name, plugin, logger, warn
        self.failed = self.closed = False

    def log(self, record: dict[str, Any]) -> None:
        if not self.failed:
            self._call("log", record)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._call("close")

    def _call(self, method: str, *args: Any) -> None:
        try:
            getattr(self.logger, method)(*args)
        except (Exception, SystemExit) as exc:  # sys.exit() in a logger must not end the run either
            self.failed = True
            self.warn([
                f"logger '{self.name}' (plugin '{self.plugin}') raised in {method}(): {type(exc).__name__}: {exc}"
                + ("; it gets no more records in this run." if method == "log" else ".")
            ])


def start_loggers(
    components: Components, config: RunConfig, run_dir: Path | None, warn: Callable[[list[str]], None]
) -> list[GuardedLogger]:
    """The run's loggers, built with their options and guarded; none without a run folder. Where
    one fails to build, those built before it are closed (they may hold files open)."""
    if run_dir is None:
        return []
    loggers: list[GuardedLogger] = []
    try:
        for r in components.loggers:
            given = config.logger_args.get(r.name, {})
            options = {**r.defaults, **given}
            try:
                built = (call_with_options(r, "Logger", given=given, run_dir=run_dir, **options) if options
                         else call_factory(r, "Logger", run_dir=run_dir))
            except ValueError as exc:  # no option to reject: the factory's own bug
                raise plugin_bug(r, "Logger", exc) from exc
            logger = check_returned(r, "Logger", built, ("log", "close"))
            loggers.append(GuardedLogger(r.name, r.entry.plugin, logger, warn))
    except BaseException:
        for started in loggers:  # the ones built before the one that failed: closed, as promised
            started.close()
        raise
    return loggers
