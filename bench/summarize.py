"""One table from the fast-recipe results of several bench runs (gpu_check.sh's parts).

    python bench/summarize.py bench/results/muon bench/results/muon-stem32 ...

Each argument is a bench JSON file or a folder holding them (the newest is read). Per part: the
runs, mean and spread of test accuracy, median timed and wall seconds, and, where the JSON has
them (since the eighth session), the median seconds from the command's start to the warm-up's
end and to the first epoch's end, the first epoch against the others, and the seconds from the
last output line to the process's exit, and how many runs captured CUDA graphs (``--cuda-graphs``
only warns and trains as usual where its capture fails). For docs/benchmarks.md; it measures
nothing itself.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

WARM_UP = re.compile(r"^Warm-up \(.*\): ([0-9.]+) s")
GRAPHS_CAPTURED = "capturing CUDA graphs"  # in the warm-up's line
FIRST_EPOCH_END = re.compile(r"^epoch 1/\d+  train loss")  # not the progress lines printed off a terminal


def newest_result(path: Path) -> Path:
    """``path`` itself, or the newest ``bench-*.json`` in it (by the time in its name: copies
    fetched from another machine have the copy's modification time)."""
    if path.is_file():
        return path
    if not path.exists():
        raise ValueError("no such file or folder")
    found = sorted(path.glob("bench-*.json"))
    if not found:
        raise ValueError("no bench-*.json here; pass a bench result or a folder holding one")
    return found[-1]


def seconds_at(timeline: list[list[Any]], pattern: re.Pattern[str]) -> float | None:
    """When the first output line matching ``pattern`` came (seconds from the start)."""
    return next((float(t) for t, line in timeline if pattern.match(str(line))), None)


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """The figures of one part's fast-recipe entry."""
    fast = result.get("blitz-fast") if isinstance(result, dict) else None
    if not fast or not fast.get("all_accuracies"):
        raise ValueError("no blitz-fast runs in it (every run failed, or not a bench.py result of a fast recipe)")
    accuracies = [100 * a for a in fast["all_accuracies"]]
    row: dict[str, Any] = {
        "part": f"{name} (stopped at its limit)" if result.get("partial") else name,
        "runs": fast["runs"],
        "mean_accuracy": statistics.fmean(accuracies),
        "min_accuracy": min(accuracies),
        "max_accuracy": max(accuracies),
        "median_timed": median(fast.get("all_timed_seconds", [])),
        "median_wall": median(fast.get("all_wall_seconds") or [fast.get("wall_seconds")]),
        "gpu": (result.get("machine") or {}).get("gpu") or "cpu",
    }
    timelines = fast.get("all_timelines") or []
    warm_up_end = [seconds_at(t, WARM_UP) for t in timelines]
    warm_up = [next((float(m.group(1)) for _, line in t if (m := WARM_UP.match(str(line)))), None) for t in timelines]
    row["median_warm_up"] = median(warm_up)
    row["median_warm_up_end"] = median(warm_up_end)
    row["median_first_epoch_end"] = median([seconds_at(t, FIRST_EPOCH_END) for t in timelines])
    row["median_exit"] = median(fast.get("all_exit_seconds") or [])
    captured = sum(any(GRAPHS_CAPTURED in str(line) for _, line in t) for t in timelines)
    row["graphs"] = f"{captured}/{len(timelines)}" if timelines else None
    epochs = [e for e in fast.get("all_epoch_seconds") or [] if e and len(e) > 1]
    row["first_epoch_over_rest"] = median([e[0] / statistics.fmean(e[1:]) for e in epochs]) if epochs else None
    return row


def table(rows: list[dict[str, Any]]) -> str:
    def number(value: float | None, digits: int = 2) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [
        "| part | runs | mean accuracy | min–max | median timed s | median wall s | warm-up s | warm-up ends at s "
        "| epoch 1 ends at s | epoch 1 / later | exit s | CUDA graphs |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['part']} | {r['runs']} | {r['mean_accuracy']:.2f} % | {r['min_accuracy']:.2f}–{r['max_accuracy']:.2f} % "
            f"| {number(r['median_timed'])} | {number(r['median_wall'], 1)} | {number(r['median_warm_up'], 1)} "
            f"| {number(r['median_warm_up_end'], 1)} | {number(r['median_first_epoch_end'], 1)} "
            f"| {number(r['first_epoch_over_rest'])} | {number(r['median_exit'])} | {r['graphs'] or '–'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="bench JSON files, or folders holding them")
    args = parser.parse_args(argv)
    rows, problems = [], []
    for path in args.results:
        try:
            found = newest_result(path)
            name = path.resolve().name if path.is_dir() else found.stem
            rows.append(summarize(name, json.loads(found.read_text())))
        except (ValueError, OSError, KeyError, TypeError, AttributeError) as exc:
            # One part that failed (or a wrong path) must not cost the others' table.
            problems.append(f"{path}: {type(exc).__name__ + ' ' if isinstance(exc, KeyError) else ''}{exc}")
    if rows:
        print(f"device: {', '.join(sorted({str(r['gpu']) for r in rows}))}")
        print(table(rows))
    for problem in problems:
        print(f"summarize.py: skipped {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(2)


if __name__ == "__main__":
    main()
