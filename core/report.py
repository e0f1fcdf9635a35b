"""The end of a run: the tutorial's accuracy lines on screen, and report.md plus pictures on disk."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from blitz.engine import Trainer, TrainResult


def accuracy_lines(per_class: dict[str, float]) -> list[str]:
    """``Accuracy of plane : 53 %``, one line per class, as the tutorial prints them."""
    width = max((len(name) for name in per_class), default=0)
    return [f"Accuracy of {name:<{width}} : {round(100 * acc):2d} %" for name, acc in per_class.items()]


def print_final_report(console: Console, result: TrainResult) -> None:
    final = result.final
    console.print(
        f"Accuracy of the network on the {final.count:,} test images: {100 * final.accuracy:.2f} %",
        highlight=False,
    )
    for line in accuracy_lines(final.per_class(result.info.class_names)):
        console.print(line, highlight=False)


def write_run_report(result: TrainResult, trainer: Trainer) -> None:
    """report.md and the pictures in the run directory (a failure here never loses the run)."""
    from blitz.pictures import write_pictures
    from blitz.reporting import write_report_files

    assert result.run_dir is not None
    pictures = write_pictures(result, trainer)
    write_report_files(result, trainer, pictures)
