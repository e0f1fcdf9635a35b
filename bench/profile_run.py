"""Where one `blitz run` spends its wall time, function by function, and which imports cost most.

On the lent H100 an eager airbench94_muon run took ~14.6 s of wall time for ~2.2 s of training:
~8.5 s before its first line and 1.5 s writing its report. This runs the command twice: once
under ``python -X importtime`` (the imports, slowest first, as cumulative seconds), once in this
process under cProfile (functions by cumulative and by own time). blitz ends every command with
``os._exit``, which would skip writing the profile: here the command returns instead.

    python bench/profile_run.py [--top 40] -- run --recipe airbench94_muon --data-root DIR
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import subprocess
import sys
import time

IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S.*)$")


def slowest_imports(argv: list[str], top: int) -> tuple[list[tuple[float, float, str]], int]:
    """(cumulative s, own s, module) of the ``top`` slowest imports of ``blitz <argv>``, in a fresh
    interpreter (the command's own output is dropped), and the command's exit status."""
    code = f"import sys\nfrom blitz.cli import main\nsys.argv = ['blitz', *{argv!r}]\nmain()"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, timeout=900)
    rows = []
    for line in done.stderr.splitlines():
        found = IMPORT_LINE.match(line)
        if found:
            own, cumulative, _, module = found.groups()
            rows.append((int(cumulative) / 1e6, int(own) / 1e6, module.strip()))
    return sorted(rows, reverse=True)[:top], done.returncode


def profile(argv: list[str]) -> tuple[pstats.Stats, float, int]:
    """cProfile of ``blitz <argv>`` in this process, its wall seconds and its exit status."""
    from blitz import cli

    ended: list[SystemExit | None] = []
    cli._exit_now = ended.append  # return to write the profile, rather than os._exit
    sys.argv = ["blitz", *argv]
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    try:
        cli.main()
    finally:
        profiler.disable()
    status = ended[0].code if ended and ended[0] is not None else 0
    return pstats.Stats(profiler, stream=io.StringIO()), time.perf_counter() - started, status if isinstance(status, int) else 1


def with_out(argv: list[str], suffix: str) -> list[str]:
    """``argv`` with its ``--out DIR`` made ``DIR<suffix>``: the two runs cannot share a folder."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            argv[i + 1] += suffix
        elif arg.startswith("--out="):
            argv[i] += suffix
    return argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=40, help="rows of each table")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="blitz's arguments, after --")
    args = parser.parse_args()
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not argv:
        parser.error("give blitz's arguments after --, e.g. -- run --recipe tutorial")

    print(f"== the {args.top} slowest imports of: blitz {' '.join(argv)} (cumulative s, own s) ==")
    imports, status = slowest_imports(with_out(argv, "-imports"), args.top)
    for cumulative, own, module in imports:
        print(f"{cumulative:8.3f} {own:8.3f}  {module}")
    if status:
        print(f"(the command exited {status}: the imports are those of a failed run)")

    stats, wall, status = profile(with_out(argv, "-profile"))
    for order, rows in (("cumulative", args.top), ("tottime", args.top // 2)):
        stream = io.StringIO()
        stats.stream = stream
        # importlib's own frames would fill the table (every import is one): the work is named
        stats.sort_stats(order).print_stats(r"^(?!.*(<frozen importlib|builtins.exec}))", rows)
        body = stream.getvalue()
        print(f"== cProfile by {order} (wall {wall:.1f} s, profiled: slower than a plain run) ==")
        print(body[body.find("   ncalls"):].rstrip() if "   ncalls" in body else body.rstrip())
    if status:  # a failed run's profile is not the one asked for: say so, and fail
        print(f"profile_run.py: the profiled command exited {status}", file=sys.stderr)
        sys.exit(status)


if __name__ == "__main__":
    main()
