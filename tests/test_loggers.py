"""Metric loggers: the built-in JSONL file and the TensorBoard plugin."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from blitz.cli import app
from blitz.runs import read_metrics

runner = CliRunner()


def test_jsonl_records_steps_and_epochs_with_a_schema(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--recipe", "randomdemo", "--epochs", "2", "--log-every", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = read_metrics(out / "metrics.jsonl")
    epochs = [r for r in records if r["event"] == "epoch"]
    steps = [r for r in records if r["event"] == "step"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert len(steps) == 8 and all(r["schema"] == 1 for r in records)  # 100 examples / batch 30 = 4 steps an epoch
    assert {"train_loss", "test_loss", "test_accuracy", "images_per_s", "lr", "seconds"} <= set(epochs[0])


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"event": "epoch", "epoch": 1}) + "\n" + '{"event": "ep')
    assert read_metrics(path) == [{"event": "epoch", "epoch": 1}]


def test_tensorboard_logger_writes_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--recipe", "randomdemo", "--epochs", "2", "--logger", "tensorboard", "--out", str(out),
                                 "--logger-arg", "tensorboard.flush_secs=5"])  # an option of its own
    assert result.exit_code == 0, result.output
    assert 'flush_secs = 5' in (out / "config.toml").read_text()  # kept: a rerun or resume logs the same way
    assert (out / "metrics.jsonl").is_file()  # --logger adds to jsonl
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"epoch/test_accuracy", "epoch/train_loss", "step/loss"} <= set(tags)
    assert [e.step for e in events.Scalars("epoch/test_accuracy")] == [4, 8]


def test_tensorboard_refuses_a_flush_interval_below_a_second(tmp_path):
    result = runner.invoke(app, ["run", "--recipe", "randomdemo", "--epochs", "1", "--logger", "tensorboard",
                                 "--logger-arg", "tensorboard.flush_secs=0", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "Logger 'tensorboard' rejected its options {'flush_secs': 0}" in " ".join(result.output.split())
