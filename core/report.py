"""The end of a run: the tutorial's accuracy lines on screen, and report files on disk.

``write_run_report`` leaves in the run directory:

- ``report.md``: model, data, epochs, final accuracy, per-class and per-epoch tables, pictures;
- ``results.json``: the final evaluation (accuracy, loss, per-class accuracy, confusion);
- ``confusion.csv``: the confusion matrix, one row per true class, one column per prediction;
- ``predictions.png``, ``curves.png``, ``confusion.png`` (see blitz.pictures).

Training is already done and checkpointed when this runs, so every step here is guarded: a
failure becomes a warning, never a lost run.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console

from blitz.files import atomic_write_text, json_text
from blitz.notices import print_warning

if TYPE_CHECKING:
    from blitz.engine import Trainer, TrainResult
    from blitz.scoring import EvalResult


def _number(value: float | None, spec: str) -> str:
    """A figure, or a dash for an epoch that was not evaluated (``eval_every``)."""
    return "–" if value is None else format(value, spec)


def accuracy_lines(per_class: dict[str, float | None]) -> list[str]:
    """``Accuracy of plane : 53 %``, one line per class, as the tutorial prints them (``n/a`` for
    a class without test images)."""
    width = max((len(name) for name in per_class), default=0)
    return [
        f"Accuracy of {name:<{width}} : " + (f"{round(100 * acc):2d} %" if acc is not None else "n/a (no test images)")
        for name, acc in per_class.items()
    ]


def print_final_report(console: Console, result: TrainResult) -> None:
    final = result.final
    console.print(
        f"Accuracy of the network on the {final.count:,} test images: {100 * final.accuracy:.2f} %",
        highlight=False,
    )
    for line in accuracy_lines(final.per_class(result.info.class_names)):
        console.print(line, highlight=False, markup=False)  # class names are data: "[x]" is text


def eval_results(result: EvalResult, class_names: tuple[str, ...]) -> dict[str, Any]:
    """An evaluation as plain JSON data (results.json, eval-<dataset>.json)."""
    return {
        "accuracy": result.accuracy,
        "loss": result.loss,
        "count": result.count,
        "class_names": list(class_names),
        "per_class_accuracy": result.per_class(class_names),
        "confusion": result.confusion.tolist(),
    }


def confusion_csv(confusion: torch.Tensor, class_names: tuple[str, ...]) -> str:
    """The confusion matrix as CSV: a header of predicted classes, then one row per true class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true \\ predicted", *class_names])
    for name, row in zip(class_names, confusion.tolist()):
        writer.writerow([name, *(int(v) for v in row)])
    return buffer.getvalue()


def markdown_report(result: TrainResult, trainer: Trainer, pictures: list[Path]) -> str:
    """report.md: what was trained, how well it did, per class and per epoch, with the pictures."""
    config, final, info = trainer.config, result.final, result.info
    per_class = final.per_class(info.class_names)
    lines = [
        f"# Run {result.run_dir.name if result.run_dir else ''}",
        "",
        f"- model: `{config.model}`" + (f" (args {json.dumps(config.model_args)})" if config.model_args else ""),
        f"- dataset: `{config.dataset}`" + (f" (args {json.dumps(config.dataset_args)})" if config.dataset_args else ""),
        f"- recipe: `{config.recipe}`" if config.recipe else None,
        f"- epochs: {len(result.history)} of {config.epochs}"
        + (f" (each cut to {config.limit_steps} steps by --limit-steps: not a full training)" if config.limit_steps else ""),
        f"- optimizer: `{config.optimizer}`, lr {config.lr:g}, batch size {config.batch_size}, schedule `{config.schedule}`",
        f"- training time: {result.train_seconds:.1f} s ({result.images_per_s:,.0f} images/s)",
        "",
        f"**Accuracy of the network on the {final.count:,} test images: {100 * final.accuracy:.2f} %** "
        f"(test loss {final.loss:.4f})",
        "",
        "## Per class",
        "",
        "| class | accuracy | test images |",
        "|---|---:|---:|",
    ]
    totals = final.confusion.sum(dim=1).tolist()
    for (name, accuracy), total in zip(per_class.items(), totals):
        cell = name.replace("|", "\\|")  # a "|" in a class name would start a new column
        shown = f"{100 * accuracy:.1f} %" if accuracy is not None else "n/a"
        lines.append(f"| {cell} | {shown} | {int(total)} |")
    lines += ["", "## Per epoch", "", "| epoch | train loss | test loss | test accuracy | images/s | seconds |",
              "|---:|---:|---:|---:|---:|---:|"]
    for h in result.history:
        accuracy = h["test_accuracy"]
        lines.append(
            f"| {h['epoch']} | {h['train_loss']:.4f} | {_number(h['test_loss'], '.4f')} "
            f"| {'–' if accuracy is None else f'{100 * accuracy:.2f} %'} "
            f"| {h.get('images_per_s', 0):,.0f} | {h.get('seconds', 0):.1f} |"
        )
    if pictures:
        lines += ["", "## Pictures", ""]
        for path in pictures:
            lines += [f"![{path.stem}]({path.name})", ""]  # relative: the report moves with its run
    lines += ["", "Files: `results.json` (these numbers), `confusion.csv`, `metrics.jsonl`, `checkpoints/`.", ""]
    return "\n".join(line for line in lines if line is not None)


def write_report_files(result: TrainResult, trainer: Trainer, pictures: list[Path]) -> list[Path]:
    """results.json, confusion.csv and report.md in the run directory; returns their paths."""
    assert result.run_dir is not None
    run_dir, names = result.run_dir, result.info.class_names
    data = {"model": trainer.config.model, "dataset": trainer.config.dataset,
            "epochs": len(result.history), **eval_results(result.final, names)}
    written = [run_dir / "results.json", run_dir / "confusion.csv", run_dir / "report.md"]
    atomic_write_text(written[0], json_text(data, indent=2) + "\n")
    atomic_write_text(written[1], confusion_csv(result.final.confusion, names))
    atomic_write_text(written[2], markdown_report(result, trainer, pictures))
    return written


def write_run_report(result: TrainResult, trainer: Trainer) -> list[Path]:
    """The report files and pictures in the run directory (a failure here never loses the run)."""
    from blitz.pictures import write_pictures

    if result.run_dir is None:
        return []
    pictures = write_pictures(result, trainer)  # guards itself, picture by picture
    try:
        return [*write_report_files(result, trainer, pictures), *pictures]
    except Exception as exc:  # the checkpoints and metrics are safe; say what is missing
        warn(trainer, f"could not write the report in {result.run_dir}: {type(exc).__name__}: {exc}")
        return pictures


def warn(trainer: Trainer, message: str) -> None:
    print_warning(trainer.console, message)
