"""TensorBoard event files in ``<run>/tensorboard``, when the tensorboard package is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blitz import Register, UsageError, hookimpl
from blitz.options import check_option


class TensorBoardLogger:
    def __init__(self, log_dir: Path, flush_secs: int = 120) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError(
                "The tensorboard logger needs the tensorboard package: pip install tensorboard"
            ) from None
        self.writer_class, self.log_dir, self.flush_secs = SummaryWriter, str(log_dir), flush_secs
        self.resumed_at = -1  # the step a resumed run went on from
        self.writer = SummaryWriter(log_dir=self.log_dir, flush_secs=flush_secs)

    def log(self, record: dict[str, Any]) -> None:
        if record.get("event") == "resume":
            # TensorBoard hides the earlier events from this step on: the lost work, done again
            self.resumed_at = int(record["step"])
            self.writer.close()
            self.writer = self.writer_class(log_dir=self.log_dir, purge_step=self.resumed_at + 1, flush_secs=self.flush_secs)
            return
        if record.get("event") == "epoch" and int(record.get("step", 0)) <= self.resumed_at:
            # an epoch logged before the resume, now with the evaluation a stop cut short: only
            # its test figures are new (the others would be drawn twice at the same step)
            record = {k: v for k, v in record.items() if k.startswith("test_") or k in ("event", "step")}
        prefix = "epoch" if record.get("event") == "epoch" else "step"
        step = int(record.get("step", 0))
        for key, value in record.items():
            if isinstance(value, (int, float)) and key not in ("step", "epoch", "schema"):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        self.writer.close()


def build_tensorboard(*, run_dir: Path, flush_secs: int = 120) -> TensorBoardLogger:
    """``flush_secs``: how often the events reach the disk (--logger-arg tensorboard.flush_secs=10
    to watch a run live; TensorBoard's own default is 120)."""
    check_option("flush_secs", flush_secs, 1)
    return TensorBoardLogger(run_dir / "tensorboard", flush_secs)


@hookimpl
def register_loggers(register: Register) -> None:
    register("tensorboard", build_tensorboard, description="TensorBoard event files (needs the tensorboard package)")
