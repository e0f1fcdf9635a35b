"""Run directories: what one `blitz run` leaves behind, and how to find it again.

    runs/<time>-<recipe or model>-<dataset>/
        config.toml       the resolved config; `blitz run --config` reruns it
        manifest.json     versions, device, seed, git commit, the plugin of each component
        metrics.jsonl     one JSON object per line (every N steps and every epoch)
        summary.json      status, epochs done, best and last accuracy, timings
        checkpoints/      last.ckpt and best.ckpt
        report.md, *.png  the final report and pictures
"""

from __future__ import annotations

import contextlib
import errno
import json
import shlex
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import tomli_w

from blitz import __version__
from blitz.files import atomic_write_text, json_text
from blitz.config import RunConfig, to_toml_dict
from blitz.errors import OutputError, UsageError

RUNS_DIR_ENV = "BLITZ_RUNS_DIR"
METRICS_SCHEMA = 1


def runs_root() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")  # set but empty (an unset $VAR): the default


def new_run_dir(config: RunConfig) -> Path:
    """The run directory for ``config``: ``--out`` or a fresh timestamped folder under runs/."""
    if config.out is not None:
        path = config.out
        check_out_dir(path)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = (config.recipe or config.model).replace("/", "_")
        path = runs_root() / f"{stamp}-{name}-{config.dataset}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = runs_root() / f"{stamp}-{name}-{config.dataset}-{suffix}"
    check_writable(path, out_advice(config))
    return path


def out_advice(config: RunConfig) -> str:
    """What to do when the run directory cannot be written."""
    return "Choose another with --out." if config.out is not None else f"Choose another with --out, or another runs folder with {RUNS_DIR_ENV}."


LOCK_FILE = ".blitz.lock"


def rerun_command(run_dir: Path) -> str:
    """The command that trains a run again from the start, with its saved settings."""
    return f"blitz run --config {shlex.quote(str(run_dir / 'config.toml'))}"


def lock_run(run_dir: Path) -> IO[str] | None:
    """Hold ``run_dir`` for this process while it trains there: a second blitz that resumes it
    (say ``--resume latest`` from another terminal) is refused instead of writing the same files.

    The lock is the operating system's (``flock``): it ends with the process, even a crash. The
    returned file keeps it; ``release_run`` gives it up. None where there is no ``flock`` (Windows)
    or the file system refuses it (NFS mounted with nolock, some Lustre setups): no lock then.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        return None
    try:
        handle = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (held open on purpose)
    except OSError as exc:  # a read-only copy of a run, say: training there could save nothing
        raise OutputError(
            f"Cannot write in the run folder '{run_dir}' ({exc.strerror or exc}): training there saves its "
            "checkpoints and metrics in it; copy the run folder somewhere writable and resume the copy."
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            handle.close()  # a file system without flock (NFS with nolock, Lustre): no lock then
            return None
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise UsageError(
            f"'{run_dir}' is being trained right now by another blitz process{f' (pid {holder})' if holder else ''}: "
            "wait for it to end, or stop it (Ctrl-C) first."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def release_run(handle: IO[str] | None) -> None:
    """Give up the lock ``lock_run`` returned. Unlocked explicitly, not only closed: a DataLoader
    worker forked while it was held shares the file, and would keep the lock while it lives."""
    if handle is None:
        return
    import fcntl

    with contextlib.suppress(OSError):
        fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


def check_out_dir(path: Path) -> None:
    """Refuse an ``--out`` that holds a run or the user's own files (also checked before a ddp
    launch, so that no process is started for nothing)."""
    if (path / "checkpoints" / "last.ckpt").exists():
        raise UsageError(
            f"'{path}' already holds a run; use --resume {path} to continue it, "
            "or choose another --out."
        )
    if (path / "config.toml").exists():  # a run that stopped before its first checkpoint
        raise UsageError(
            f"'{path}' already holds a run (with no checkpoint to resume from); choose another "
            "--out, or delete that folder first."
        )
    if path.is_dir() and any(p.name not in (LOCK_FILE, ".write-test") for p in path.iterdir()):  # the user's own files: never write among them
        raise UsageError(f"--out '{path}' is a folder that is not empty and holds no blitz run; choose a new or empty folder.")
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out '{path}' is a file, not a folder; choose a new or empty folder.")


def check_creatable(path: Path, advice: str) -> None:
    """Refuse, before the data loads, a run directory that cannot be made or written: a file where
    ``path`` or a folder above it would be, or a nearest existing folder that cannot be written
    (permissions, a read-only disk). Nothing is created: a run that fails later leaves no folder."""
    existing = path
    while not existing.exists() and existing.parent != existing:  # False also under a file (ENOTDIR)
        existing = existing.parent
    if not existing.is_dir():
        reason = "Not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and os.statvfs(existing).f_flag & os.ST_RDONLY
        reason = "Read-only file system" if read_only else "Permission denied"
    else:
        return
    where = f" ('{existing}')" if existing != path else ""
    raise OutputError(f"Cannot write the run directory '{path}': {reason}{where}. {advice}")


def check_writable(path: Path, advice: str = "Choose another with --out.") -> None:
    """Fail before training if the run directory cannot be created and written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"Cannot write the run directory '{path}': {exc.strerror or exc}. {advice}") from None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_start_files(
    path: Path, config: RunConfig, device: str, plugins: dict[str, str],
    components: dict[str, dict[str, str]] | None = None, *, device_type: str,
) -> None:
    """config.toml and manifest.json. ``device``: the strategy's words for where it trains;
    ``device_type``: the kind of device it trains on (``cpu``, ``cuda``)."""
    import torch  # here, not at the top: `blitz runs` and `show` need no torch

    # The data folder as found now, also where it came from $BLITZ_DATA_ROOT or the default
    # ./data: `--resume` and `blitz eval` from another folder or shell find the same data.
    saved = config if config.data_root is not None else config.model_copy(update={"data_root": config.resolved_data_root()})
    atomic_write_text(path / "config.toml", tomli_w.dumps(to_toml_dict(saved)))
    manifest = {
        "blitz": __version__,
        "torch": torch.__version__,
        # the CUDA version torch was built for (null: a CPU-only build), also where the run used none;
        # earlier manifests called it "cuda", which read as if CUDA ran the training (nothing reads either)
        "torch_built_for_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "device_type": device_type,
        "seed": config.seed,
        "git_commit": git_commit(),
        "plugins": plugins,
        "components": components or {},  # each one's name, registered name and plugin
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": os.environ.get("BLITZ_COMMAND_LINE", ""),
    }
    earlier = read_json(path / "manifest.json")  # a resume: the run's first start stays its start
    if isinstance(earlier, dict) and "started" in earlier:
        resumes = earlier.get("resumed") if isinstance(earlier.get("resumed"), list) else []
        manifest["resumed"] = [*resumes, {"started": manifest["started"], "command": manifest["command"]}]
        manifest["started"], manifest["command"] = earlier["started"], earlier.get("command", "")
    atomic_write_text(path / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def plugins_not_loaded(run_dir: Path, now: dict[str, str]) -> str:
    """The plugins a run was trained with that are not loaded now, and how to get each back (its
    component names may be theirs), as a sentence; "" if none or no manifest. ``now``: each known
    plugin's state, ``loaded``, ``skipped`` (BLITZ_LOAD_PLUGINS) or ``failed``."""
    try:
        plugins = json.loads((run_dir / "manifest.json").read_text()).get("plugins", {})
    except (OSError, ValueError, AttributeError):
        return ""
    missing = [(name, str(origin)) for name, origin in sorted(plugins.items()) if now.get(name) != "loaded"]
    if not missing:
        return ""
    ways = []
    for name, origin in missing[:3]:
        state = now.get(name)
        if state == "skipped":
            ways.append(f"'{name}' (left out by BLITZ_LOAD_PLUGINS: add it there)")
        elif state == "failed":
            ways.append(f"'{name}' (it failed to load: see 'blitz list-plugins')")
        elif origin.startswith("folder "):
            folder = origin[len("folder "):]
            ways.append(f"'{name}' (from {folder}: pass --plugins-dir {shlex.quote(folder)})")
        else:
            ways.append(f"'{name}' ({origin}: install it)")
    return f"The run was trained with plugin(s) not loaded now: {'; '.join(ways)}."


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(path / "summary.json", json_text(summary, indent=2) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # not JSON, a damaged byte (UnicodeDecodeError), nested too deep
        return {}


def ran_on(run_dir: Path) -> str | None:
    """Where a run trained, from its manifest.json: "cpu (auto picked cpu: no GPU found); torch
    2.14.1, Python 3.11.7, blitz 0.1.0". None where there is no readable manifest."""
    manifest = read_json(run_dir / "manifest.json")
    if not isinstance(manifest, dict):
        return None
    device, device_type = manifest.get("device"), manifest.get("device_type")
    where = f"{device_type} ({device})" if device_type and device not in (None, device_type) else device_type or device
    versions = ", ".join(f"{name} {manifest[key]}" for name, key in (("torch", "torch"), ("Python", "python"), ("blitz", "blitz"))
                         if manifest.get(key))
    return "; ".join(str(part) for part in (where, versions) if part) or None


def find_run(name: str | Path) -> Path:
    """A run directory given as a path, as a name under runs/, as the start of one name there,
    or as ``latest`` (the run there started or resumed last)."""
    if not str(name).strip():  # "$RUN" unset: not the only run there, nor the folder one is in
        raise UsageError("RUN was given an empty value; give a run's folder, its name, the start of its name, "
                         "or 'latest'. See 'blitz runs'.")
    for candidate in (Path(name).expanduser(), runs_root() / str(name)):
        if (candidate / "config.toml").is_file():
            return candidate
    root = runs_root()
    there = sorted(p for p in root.iterdir() if (p / "config.toml").is_file()) if root.is_dir() else []
    if str(name) == "latest" and there:
        return max(there, key=lambda p: (p / "config.toml").stat().st_mtime)
    matches = [p for p in there if p.name.startswith(str(name))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(p.name for p in matches[:3]) + (", ..." if len(matches) > 3 else "")
        raise UsageError(f"'{name}' starts {len(matches)} run names ({shown}); give more of the name. See 'blitz runs'.")
    raise UsageError(f"No run at '{name}' (looked for config.toml there and under {runs_root()}/). See 'blitz runs'.")


def list_runs(root: Path | None = None) -> list[dict[str, Any]]:
    """The runs under ``root`` (default: the runs folder, which may not exist yet)."""
    explicit = root is not None
    root = root or runs_root()
    if not root.is_dir():
        if explicit:
            raise UsageError(f"--root '{root}' is not a folder; give the folder that holds the run directories.")
        if root.exists():
            raise UsageError(f"The runs folder '{root}' ({RUNS_DIR_ENV} or ./runs) is a file; point {RUNS_DIR_ENV} at a folder.")
        return []
    rows = []
    for path in sorted(p for p in root.iterdir() if (p / "config.toml").is_file()):
        rows.append({"run": path.name, "path": str(path), **read_summary(path)})
    return rows


def read_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json, with status ``dead`` where it says ``running`` but no process trains the run
    (killed with SIGKILL, out of memory, a power cut: nothing could write how it ended)."""
    summary = read_json(run_dir / "summary.json")
    if not isinstance(summary, dict):  # valid JSON, but not blitz's (a list, a number)
        summary = {}
    if summary.get("status") == "running" and being_trained(run_dir) is False:
        summary["status"] = "dead"
    if not summary:  # never written (a start cut short) or not readable: say so, not "?"
        summary["status"] = "no summary" if not (run_dir / "summary.json").exists() else "unreadable summary"
    return summary


def being_trained(run_dir: Path) -> bool | None:
    """Whether a process holds the run's lock now; None where that cannot be told (no lock file,
    no ``flock``). A shared lock, taken and dropped at once, as a probe."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        handle = open(run_dir / LOCK_FILE, encoding="utf-8")  # noqa: SIM115
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            return True if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else None
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; a line cut short by a crash is skipped."""
    records = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()  # a damaged line is skipped
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):  # anything else is not a record this version wrote
            records.append(record)
    return records
