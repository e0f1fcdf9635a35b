"""The device-strategy matrix for docs/benchmarks.md (needs a CUDA GPU).

Runs `blitz run` for each strategy (cuda, dataparallel, ddp with one process) x workload (the
tutorial recipe; timm resnet18) x precision (32, bf16), and prints and saves images/s and test
accuracy for each, with the card and torch version. One GPU cannot show multi-GPU scaling:
dataparallel runs as cuda there, and ddp as one process.

    python bench/strategies.py --data-root /root/cifar10 [--tutorial-epochs 2] [--resnet-epochs 5]

`--jobs N` runs N of them at once. Accuracy does not depend on it (each run is seeded), but
images/s then counts a GPU shared N ways: the batch-4 tutorial runs are bound by kernel launches,
so a short lent machine gets their accuracy from concurrent runs and their speed from runs alone
cut at `--timeout` (a cut run reports the images/s of the steps it logged).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import run_figures, sigterm_as_interrupt, write_result  # noqa: E402  (bench/bench.py, beside this file)


RUNNING: set[subprocess.Popen[str]] = set()  # the runs in flight, stopped on Ctrl-C
STOPPING = threading.Event()  # set on Ctrl-C: no new run starts, one starting now stops itself
PRINT_LOCK = threading.Lock()  # one result line at a time from concurrent runs


def run_bounded(command: list[str], timeout: float) -> tuple[int, str]:
    """Run ``command``; past ``timeout`` seconds send its whole process group SIGTERM (blitz then
    checkpoints and exits, torchrun's workers included), and SIGKILL 20 s later."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group: a cut run takes its workers along
    RUNNING.add(proc)
    if STOPPING.is_set():  # Ctrl-C came while it started, after measure_all stopped the others
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=timeout)
        return proc.returncode, stderr
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        return proc.returncode, f"stopped after {timeout:.0f} s"
    finally:
        RUNNING.discard(proc)


def partial_figures(run_dir: Path) -> dict[str, Any]:
    """Training speed of a run that did not finish, from the step records it logged."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        return {}
    steps = [r for r in map(json.loads, metrics.read_text().splitlines()) if r.get("event") == "step"]
    if len(steps) < 2:
        return {}
    rates = [r["images_per_s"] for r in steps[1:]]  # the first window holds the start-up
    return {"images_per_s": statistics.median(rates), "steps_done": steps[-1]["step"], "partial": True}


def measure_all(cells: list[Any], measure: Callable[[Any], dict[str, Any]], jobs: int) -> list[dict[str, Any]]:
    """``measure`` each cell, ``jobs`` at a time (threads: each waits on its own `blitz run`), in order.

    On Ctrl-C (or any error) the cells not started are dropped and the runs in flight stopped:
    they run in their own process groups, out of the terminal's reach.
    """
    def unless_stopping(cell: Any) -> dict[str, Any] | None:
        return None if STOPPING.is_set() else measure(cell)

    STOPPING.clear()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        return list(pool.map(unless_stopping, cells))  # type: ignore[arg-type]  (None only once stopping)
    except BaseException:
        STOPPING.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(RUNNING):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        raise
    finally:
        pool.shutdown(wait=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--tutorial-epochs", type=int, default=2)
    parser.add_argument("--resnet-epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--timeout", type=float, default=300, help="seconds before a run is given up")
    parser.add_argument("--workloads", nargs="*", default=["resnet18", "tutorial"], help="which workloads to run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (images/s then counts a shared GPU)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("bench/strategies.py needs a CUDA GPU")
    workloads = {
        "resnet18": ["--model", "resnet18", "--dataset", "cifar10", "--optimizer", "sgd", "--lr", "0.1",
                     "--momentum", "0.9", "--weight-decay", "5e-4", "--schedule", "onecycle", "--batch-size", "256",
                     "--epochs", str(args.resnet_epochs), "--flip", "--translate", "4", "--channels-last",
                     "--eval-batch-size", "2000", "--log-every", "100"],
        "tutorial": ["--recipe", "tutorial", "--epochs", str(args.tutorial_epochs)],
    }
    strategies = {"cuda": ["--strategy", "cuda"], "dataparallel": ["--strategy", "dataparallel"],
                  "ddp": ["--strategy", "ddp", "--nproc-per-node", "1"]}
    with tempfile.TemporaryDirectory() as tmp:
        matrix = [(workload, strategy, precision) for workload in args.workloads for strategy in strategies
                  for precision in ("32", "bf16")]
        concurrent = max(1, min(args.jobs, len(matrix)))

        def measure(cell: tuple[str, str, str]) -> dict[str, Any]:
            workload, strategy, precision = cell
            out = Path(tmp) / f"{workload}-{strategy}-{precision}"
            start = time.perf_counter()
            command = [sys.executable, "-m", "blitz", "run", *workloads[workload], *strategies[strategy],
                       "--precision", precision, "--data-root", str(args.data_root), "--out", str(out)]
            exit_code, stderr = run_bounded(command, args.timeout)
            row = {"workload": workload, "strategy": strategy, "precision": precision,
                   "wall_seconds": time.perf_counter() - start, "exit": exit_code, "concurrent_runs": concurrent}
            if exit_code == 0:
                row.update(run_figures(out))
            else:
                row["error"] = stderr[-500:]
                row.update(partial_figures(out))
            with PRINT_LOCK:
                print(json.dumps(row), flush=True)
            return row

        # a time limit's SIGTERM stops the runs in flight too (their own process groups: out of its reach)
        with sigterm_as_interrupt():
            rows = measure_all(matrix, measure, args.jobs)
    write_result(args.out, "strategies", {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows})


if __name__ == "__main__":
    main()
