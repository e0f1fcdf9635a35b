"""Where a run's start-up goes: each piece timed in fresh processes, medians of several.

On the lent H100 a `blitz run` printed its first line 8.5 s after it started (on the 2-core
CPU, 1.4 s): this splits such time into the interpreter, importing torch, starting CUDA,
importing the compiler and matplotlib, and blitz's own command line with its plugins.

    python bench/startup.py [--repeat 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Each piece: what it measures, and the code a fresh interpreter runs (timed inside, so the
# interpreter's own start is its own row).
PIECES: list[tuple[str, str]] = [
    ("import torch", "import torch"),
    ("CUDA start (after import torch)", "import torch\nt = time.perf_counter()\n"
     "torch.zeros(1, device='cuda'); torch.cuda.synchronize()"),
    ("import torch._inductor.config (after import torch)", "import torch\nt = time.perf_counter()\n"
     "import torch._inductor.config"),
    ("import matplotlib's Figure and Agg", "from matplotlib.figure import Figure\n"
     "from matplotlib.backends.backend_agg import FigureCanvasAgg"),
    ("import blitz's command line", "import blitz.cli"),
    ("load blitz's plugins (after import torch)", "import torch\nt = time.perf_counter()\n"
     "from blitz.plugin_host import get_host\nget_host()"),
]


def time_piece(code: str) -> float:
    """Seconds the code took in a fresh interpreter (from its ``t``, which the code may reset)."""
    script = f"import time\nt = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    return float(done.stdout.strip().splitlines()[-1])


def time_command(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per piece; medians are reported")
    parser.add_argument("--out", type=Path, default=None, help="folder for startup.json")
    args = parser.parse_args()

    import torch  # only to know whether the CUDA row can run

    rows: dict[str, float | str] = {}
    width = 52

    def save() -> None:
        if args.out is None:
            return
        args.out.mkdir(parents=True, exist_ok=True)
        record = {"python": sys.version.split()[0], "torch": torch.__version__, "repeat": args.repeat,
                  "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                  "seconds": rows}
        (args.out / "startup.json").write_text(json.dumps(record, indent=2) + "\n")

    def record(name: str, measure: Callable[[], float]) -> None:
        """One row, printed and saved as soon as it is measured (a part stopped at its limit keeps
        those)."""
        try:
            rows[name] = statistics.median(measure() for _ in range(args.repeat))
        except (RuntimeError, subprocess.SubprocessError) as exc:
            rows[name] = f"failed: {exc}"
        value = rows[name]
        print(f"{name:<{width}}  {value:.3f}" if isinstance(value, float) else f"{name:<{width}}  {value}", flush=True)
        save()

    print(f"{'piece':<{width}}  seconds (median of {args.repeat})")
    record("interpreter start and exit (python -c pass)", lambda: time_command([sys.executable, "-c", "pass"]))
    for name, code in PIECES:
        if "cuda" in code and not torch.cuda.is_available():
            rows[name] = "no GPU"
            print(f"{name:<{width}}  no GPU")
            continue
        record(name, lambda code=code: time_piece(code))
    blitz = shutil.which("blitz")
    if blitz:
        record("`blitz list-plugins`, start to exit", lambda: time_command([blitz, "list-plugins"]))


if __name__ == "__main__":
    main()
