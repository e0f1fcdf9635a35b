"""The built-in metric logger: ``metrics.jsonl`` in the run directory, one JSON object a line.

Each record is written with one ``write`` to a file opened for appending, so a crash can at
worst cut the last line short, and readers skip such a line. A resumed run sends a ``resume``
record first: the records past its step (the work a stop or crash lost, which the run does
again) are dropped then, and an epoch recorded again (its evaluation, abandoned by a stop, done
on resume) replaces the earlier record. So the file holds one record per epoch and step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from blitz import Register, hookimpl
from blitz.errors import OutputError
from blitz.files import json_text


class JSONLLogger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._epochs: set[Any] = set()  # epochs with a record in the file
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def log(self, record: dict[str, Any]) -> None:
        try:
            event = record.get("event")
            if event == "resume":
                self._rewrite(lambda r: not isinstance(r.get("step"), int) or r["step"] <= record["step"])
            elif event == "epoch" and record.get("epoch") in self._epochs:
                self._rewrite(lambda r: not (r.get("event") == "epoch" and r.get("epoch") == record["epoch"]))
            if event == "epoch":
                self._epochs.add(record.get("epoch"))
            os.write(self._fd, (json_text(record) + "\n").encode("utf-8"))
        except OSError as exc:
            raise OutputError(f"Could not write to '{self.path}': {exc.strerror or exc}.") from None

    def _rewrite(self, keep: Any) -> None:
        """The file with only the records ``keep`` accepts (lines cut short by a crash go too),
        replaced in one rename: a crash now leaves the old file or the new one."""
        lines, self._epochs = [], set()
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():  # a damaged line is dropped
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and keep(record):
                lines.append(line + "\n")
                if record.get("event") == "epoch":
                    self._epochs.add(record.get("epoch"))
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text("".join(lines), encoding="utf-8")
        os.close(self._fd)
        self._fd = -1
        os.replace(partial, self.path)
        self._fd = self._open()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def build_jsonl(*, run_dir: Path) -> JSONLLogger:
    return JSONLLogger(run_dir / "metrics.jsonl")


@hookimpl
def register_loggers(register: Register) -> None:
    register("jsonl", build_jsonl, description="metrics.jsonl in the run directory (always on by default)")
