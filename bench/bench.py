"""`make bench`: blitz against the tutorial's own loop, side by side, in one run on one machine.

Runs, each in a fresh process, and prints one table (also written as JSON):
  (a) tutorial-loop     bench/tutorial_loop.py: the tutorial's loop in its own style (baseline)
  (d) handwritten-loop  bench/handwritten_loop.py: blitz's tutorial work without blitz, 1 thread
  (b) blitz tutorial    `blitz run --recipe tutorial` (1 or 2 threads, the faster as timed)
  (e) blitz tutorial 1t `blitz run --recipe tutorial --cpu-threads 1`: (d)'s work, for overhead
  (c) blitz fast        `blitz run --recipe lenet_fast` on a CPU, `--recipe airbench94` on a GPU
Ratios are images/s and wall time against (a); overhead is (e)'s training time against (d): the
same work on one thread (with threads chosen by timing, each process would choose by the load of
its own moment, and the overhead figure would measure the machine's load).
On a GPU, blitz's airbench-style time (CUDA events around training and the final evaluation)
is reported too. Times from a shared, noisy machine: repeat with --repeat, which runs the entries
in rounds (a, d, b, e, c, a, ...), and read the medians and the round-by-round ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run_script(script: str, data_root: Path, epochs: int, workdir: Path, args: tuple[str, ...] = ()) -> dict[str, Any]:
    out = workdir / f"{script}-{time.monotonic_ns()}.json"
    start = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / script), "--data-root", str(data_root), "--epochs", str(epochs),
                    "--json", str(out), *args], check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    result["wall_seconds"] = time.perf_counter() - start
    return result


def run_blitz(name: str, args: list[str], data_root: Path, workdir: Path) -> dict[str, Any]:
    """One `blitz run`; wall time is from the command's start to its exit (start-up included).

    ``timeline`` holds each output line with the seconds since the start at which it came: where
    the wall time went (start-up, data, warm-up, epochs, report, exit).
    """
    run_dir = workdir / f"{name.replace(' ', '-')}-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "blitz", "run", *args, "--data-root", str(data_root), "--out", str(run_dir)]
    start = time.perf_counter()
    timeline: list[tuple[float, str]] = []
    # Unbuffered: each line arrives when it is printed, not when a buffer fills.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                timeline.append((round(time.perf_counter() - start, 3), line.rstrip("\n")))
            proc.wait()
        except BaseException:  # stopped (a time limit's SIGTERM, Ctrl-C): the run goes too, at once
            proc.kill()
            raise
    wall = time.perf_counter() - start
    output = "\n".join(line for _, line in timeline)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{output[-2000:]}")
    return {"name": name, "wall_seconds": wall, **run_figures(run_dir), "output_tail": output[-1200:],
            "timeline": [[t, line[:120]] for t, line in timeline], "exit_seconds": wall - timeline[-1][0] if timeline else None}


def run_figures(run_dir: Path) -> dict[str, Any]:
    """Training images/s and seconds, timed seconds and final accuracy of a finished blitz run."""
    summary = json.loads((run_dir / "summary.json").read_text())
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
              if '"event": "epoch"' in line]
    train_seconds = sum(e["seconds"] for e in epochs)
    images = sum(e["images_per_s"] * e["seconds"] for e in epochs)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    threads: dict[str, int] = {}  # --cpu-threads auto: training steps per thread count
    for e in epochs:
        for count, steps in e.get("cpu_threads_steps", {}).items():
            threads[count] = threads.get(count, 0) + steps
    return {
        **({"cpu_threads_steps": threads} if threads else {}),
        "images_per_s": images / train_seconds if train_seconds else 0.0,
        "train_seconds": train_seconds,
        "timed_seconds": summary.get("timed_seconds"),
        "test_accuracy": summary["last_accuracy"],
        "epochs": len(epochs),
        "epoch_seconds": [round(e["seconds"], 4) for e in epochs],  # a slow first epoch: one-time costs in training
        "device": manifest["device"],
        "torch": manifest["torch"],
    }


def write_result(out: Path, prefix: str, result: dict[str, Any], path: Path | None = None, quiet: bool = False) -> Path:
    """Save ``result`` as ``<out>/<prefix>-<time>.json`` (or over ``path``, in one rename) and say where."""
    out.mkdir(parents=True, exist_ok=True)
    path = path or out / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    partial.replace(path)
    if not quiet:
        print(f"written {path}")
    return path


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a time limit's `timeout`) as KeyboardInterrupt inside: the script stops its runs
    and keeps what it measured, instead of dying with nothing written."""
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(results[0])
    for key in ("images_per_s", "train_seconds", "timed_seconds", "wall_seconds", "test_accuracy"):
        values = [r[key] for r in results if r.get(key) is not None]
        merged[key] = statistics.median(values) if values else None
    merged["runs"] = len(results)
    merged["all_accuracies"] = [r["test_accuracy"] for r in results]
    merged["all_timed_seconds"] = [r.get("timed_seconds") for r in results]
    merged["all_wall_seconds"] = [r["wall_seconds"] for r in results]
    if any("cpu_threads_steps" in r for r in results):
        merged.pop("cpu_threads_steps", None)
        merged["all_cpu_threads_steps"] = [r.get("cpu_threads_steps") for r in results]
    if any("epoch_seconds" in r for r in results):
        merged["all_epoch_seconds"] = [r.get("epoch_seconds") for r in results]
    if any("timeline" in r for r in results):
        merged.pop("timeline", None)
        merged["all_timelines"] = [r.get("timeline") for r in results]
        merged["all_exit_seconds"] = [r.get("exit_seconds") for r in results]
    merged["mean_accuracy"] = statistics.fmean(merged["all_accuracies"])
    return merged


def interleaved_runs(
    repeats: dict[str, int], run_one: Callable[[str, int], dict[str, Any]],
    runs: dict[str, dict[int, dict[str, Any]]], after_each: Callable[[], None] = lambda: None,
) -> None:
    """Each entry's runs by round, taken in rounds (a, d, b, e, c, a, d, b, e, c, ...), into ``runs``
    (entry -> round -> result), calling ``after_each`` after each run that worked.

    A shared machine's load drifts over minutes: back-to-back repeats of one entry would hand a
    busy spell to that entry alone (a slowed tutorial loop flatters every ratio against it), and
    rounds spread it over all. A run that fails is reported and left out; the others still count.
    """
    for key in repeats:
        runs.setdefault(key, {})
    for i in range(max(repeats.values(), default=0)):
        for key, repeat in repeats.items():
            if i >= repeat:
                continue
            print(f"running {key} ({i + 1}/{repeat}) ...", flush=True)
            try:
                result = run_one(key, i)
            except (RuntimeError, subprocess.CalledProcessError) as exc:  # keep the other runs' figures
                print(exc, flush=True)
                continue
            runs[key][i] = result
            print("  " + json.dumps({k: result.get(k) for k in ("test_accuracy", "timed_seconds", "wall_seconds")}), flush=True)
            after_each()


def paired_ratios(
    runs: dict[str, dict[int, dict[str, Any]]], key: str, base: str, field: str
) -> list[float]:
    """``field`` of ``key`` over ``base``, round by round (rounds where both ran): each pair shared
    the machine's state of the moment, which medians taken apart do not."""
    mine, theirs = runs.get(key, {}), runs.get(base, {})
    return [mine[i][field] / theirs[i][field] for i in sorted(mine.keys() & theirs.keys()) if theirs[i][field]]



def cpu_model() -> str:
    """The CPU's model and clock as Linux reports them ("Intel(R) Xeon(R) Processor, 2300 MHz"):
    figures differ by 2x between the machines a project is lent, so each run says which it had."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    clock = f", {float(fields['cpu MHz']):.0f} MHz" if "cpu MHz" in fields else ""
    return fields.get("model name", "unknown") + clock

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding cifar-10-batches-py/")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each entry; medians are reported")
    parser.add_argument("--fast-repeat", type=int, default=None, help="runs of the fast recipe (default --repeat)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs for (a), (b), (d) and (e)")
    parser.add_argument("--only", nargs="*",
                        help="entries to run: tutorial-loop handwritten blitz-tutorial blitz-tutorial-1t blitz-fast")
    parser.add_argument("--fast-recipe", default=None,
                        help="the fast recipe (c) (default: airbench94 on a GPU, lenet_fast on a CPU)")
    parser.add_argument("--fast-args", default="", help="more `blitz run` options for the fast recipe, e.g. '--compile'")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the fast recipe's runs take seeds from this one up (more seeds than an earlier run's)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for the JSON result")
    args = parser.parse_args()

    import torch

    gpu = torch.cuda.is_available()
    fast_recipe = args.fast_recipe or ("airbench94" if gpu else "lenet_fast")
    entries = {
        "tutorial-loop": lambda w, i: run_script("tutorial_loop.py", args.data_root, args.epochs, w),
        "handwritten": lambda w, i: run_script("handwritten_loop.py", args.data_root, args.epochs, w, ("--cpu-threads", "1")),
        "blitz-tutorial": lambda w, i: run_blitz("blitz tutorial", ["--recipe", "tutorial", "--epochs", str(args.epochs)], args.data_root, w),
        "blitz-tutorial-1t": lambda w, i: run_blitz("blitz tutorial 1t", ["--recipe", "tutorial", "--epochs", str(args.epochs),
                                                    "--cpu-threads", "1"], args.data_root, w),
        # each run of the fast recipe has its own seed, so the repeats sample run-to-run variance
        "blitz-fast": lambda w, i: run_blitz(f"blitz {fast_recipe}", ["--recipe", fast_recipe, "--seed", str(args.first_seed + i),
                                             *args.fast_args.split()], args.data_root, w),
    }
    chosen = args.only or list(entries)
    repeats = {key: (args.fast_repeat or args.repeat) if key == "blitz-fast" else args.repeat for key in chosen}
    machine = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if gpu else None,
               "cpus": os.cpu_count(), "cpu": cpu_model(), "date": time.strftime("%Y-%m-%d %H:%M"),
               "fast_first_seed": args.first_seed}
    path = args.out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    runs: dict[str, dict[int, dict[str, Any]]] = {}

    def medians() -> dict[str, Any]:
        return {key: median_of([by_round[i] for i in sorted(by_round)]) for key, by_round in runs.items() if by_round}

    # The file holds every run so far, written again after each: a time limit that stops this
    # script (SIGTERM) or a crash of the machine loses at most the run in flight.
    stopped = None
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="blitz-bench-") as tmp:
        try:
            interleaved_runs(repeats, lambda key, i: entries[key](Path(tmp), i), runs,
                             after_each=lambda: write_result(args.out, "bench", {**medians(), "machine": machine, "partial": True}, path, quiet=True))
        except KeyboardInterrupt as exc:
            stopped = exc
            print(f"stopped ({exc or 'Ctrl-C'}): the runs that finished are kept", flush=True)
    results: dict[str, Any] = medians()

    base = results.get("tutorial-loop")
    hand = results.get("handwritten")
    print()
    print(f"{'entry':<22}{'images/s':>11}{'train s':>9}{'timed s':>9}{'wall s':>8}{'accuracy':>10}{'x img/s (a)':>13}{'x wall (a)':>12}")
    for key, r in results.items():
        speed = f"{r['images_per_s'] / base['images_per_s']:.2f}" if base else "-"
        wall = f"{base['wall_seconds'] / r['wall_seconds']:.2f}" if base else "-"
        timed = f"{r['timed_seconds']:.2f}" if r.get("timed_seconds") else "-"
        print(f"{r['name']:<22}{r['images_per_s']:>11,.0f}{r['train_seconds']:>9.1f}{timed:>9}{r['wall_seconds']:>8.1f}"
              f"{100 * r['test_accuracy']:>9.2f}%{speed:>13}{wall:>12}")
    fast = results.get("blitz-fast")
    if fast and fast["runs"] > 1:
        timed = [t for t in fast["all_timed_seconds"] if t]
        print(f"\n{fast['name']}: mean accuracy {100 * fast['mean_accuracy']:.2f} % over {fast['runs']} runs "
              f"(seeds {args.first_seed}-{args.first_seed + fast['runs'] - 1}), min {100 * min(fast['all_accuracies']):.2f} %; "
              f"median timed {statistics.median(timed) if timed else float('nan'):.2f} s")
    speedups = paired_ratios(runs, "blitz-tutorial", "tutorial-loop", "images_per_s")
    if speedups:
        print(f"\nblitz tutorial vs tutorial loop, images/s round by round: "
              f"{', '.join(f'{r:.2f}x' for r in speedups)} (median {statistics.median(speedups):.2f}x)")
        results["paired"] = {"blitz_tutorial_vs_loop_images_per_s": speedups, "median": statistics.median(speedups)}
    if bool(hand) != ("blitz-tutorial-1t" in results):
        print("\nno overhead figure: it needs both handwritten and blitz-tutorial-1t")
    if hand and "blitz-tutorial-1t" in results:
        # round by round where both ran, as the ratio above; else the medians' ratio
        rounds = [r - 1 for r in paired_ratios(runs, "blitz-tutorial-1t", "handwritten", "train_seconds")]
        overhead = statistics.median(rounds) if rounds else results["blitz-tutorial-1t"]["train_seconds"] / hand["train_seconds"] - 1
        print(f"\nframework overhead (blitz tutorial vs hand-written loop, 1 thread each, training time): {100 * overhead:+.1f} %"
              + (f" (rounds: {', '.join(f'{100 * r:+.1f} %' for r in rounds)})" if rounds else ""))
        results["overhead"] = {"blitz_vs_handwritten_train_time": overhead, "rounds": rounds}
    results["machine"] = machine
    if stopped is not None:
        results["partial"] = True
    write_result(args.out, "bench", results, path)
    if stopped is not None:
        raise SystemExit(124)  # as `timeout` itself says: stopped at the limit
    failed = [key for key in chosen if key not in results]
    if failed:  # the figures that did come are saved above; a script waiting on this must still know
        raise SystemExit(f"no result from: {', '.join(failed)} (see the errors above)")


if __name__ == "__main__":
    main()
