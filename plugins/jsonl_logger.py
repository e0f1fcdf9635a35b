"""The built-in metric logger: ``metrics.jsonl`` in the run directory, one JSON object a line.

Each record is written with one ``write`` to a file opened for appending, so a crash can at
worst cut the last line short, and readers skip such a line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from blitz import Register, hookimpl
from blitz.errors import OutputError


class JSONLLogger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def log(self, record: dict[str, Any]) -> None:
        try:
            os.write(self._fd, (json.dumps(record) + "\n").encode("utf-8"))
        except OSError as exc:
            raise OutputError(f"Could not append to '{self.path}': {exc.strerror or exc}.") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def build_jsonl(*, run_dir: Path) -> JSONLLogger:
    return JSONLLogger(run_dir / "metrics.jsonl")


@hookimpl
def register_loggers(register: Register) -> None:
    register("jsonl", build_jsonl, description="metrics.jsonl in the run directory (always on by default)")
