"""Starting DDP jobs through torchrun's own launcher, so ``blitz run --strategy ddp`` needs no wrapper.

blitz re-runs its own command line under ``torch.distributed.run`` (the module behind the
``torchrun`` command): torchrun starts one process per device, handles rendezvous across
machines, and ends the whole job when any rank fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blitz.errors import BlitzError, Interrupted, UsageError, debug_requested

TIMEOUT_ENV = "BLITZ_DDP_TIMEOUT"  # seconds a collective may wait before the job fails
SIGNALS_ENV = "TORCHELASTIC_SIGNALS_TO_HANDLE"  # torchrun's own setting: the signals it stops a job on
FINISHED_ENV = "BLITZ_FINISHED_FILE"  # set by the launcher: rank 0 writes "finished" there at the end


def report_finished() -> None:
    """Tell the launcher (if any) that the run finished: a Ctrl-C that reaches torchrun just
    after the last evaluation must not turn a finished job into an interrupted one."""
    path = os.environ.get(FINISHED_ENV)
    if path:
        with contextlib.suppress(OSError), open(path, "w", encoding="utf-8") as f:
            f.write("finished\n")

# blitz run options that belong to the launcher, not to the training processes
LAUNCH_OPTIONS = ("--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-backend", "--rdzv-id")


def launched_by_torchrun() -> bool:
    """Whether this process is a rank that torchrun (or blitz's launcher) started."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def check_ddp_device(device: str | None) -> None:
    """ddp puts process k on GPU k (LOCAL_RANK); --device can only say 'cpu' (gloo on CPUs)."""
    if device not in (None, "cpu"):
        raise UsageError(
            f"--strategy ddp takes no --device '{device}': each process uses the GPU of its local rank "
            "(choose GPUs with CUDA_VISIBLE_DEVICES), or give --device cpu to run on CPUs."
        )


@dataclass(frozen=True)
class LaunchSpec:
    nproc_per_node: int | None = 1  # None: not given (a resume then takes the run's own count)
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    rdzv_backend: str = "c10d"
    rdzv_id: str = "blitz"


def strip_launch_options(argv: list[str]) -> list[str]:
    """``argv`` without the launcher's options, for the command each process runs."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def ddp_timeout_seconds() -> float:
    """``$BLITZ_DDP_TIMEOUT`` (default 600): how long a collective may wait, checked before launching."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip() or "600"
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= 10**9:  # nan fails too; and torch's timedelta must hold it (~31 years)
        raise UsageError(f"${TIMEOUT_ENV} must be a number of seconds above 0 (at most 1e9), like 600, got '{raw}'.")
    return seconds


def check_endpoint(endpoint: str) -> None:
    """``--rdzv-endpoint`` as torchrun takes it, HOST or HOST:PORT (port 0: any free one); a
    malformed one makes torchrun retry for minutes, printing socket errors, instead of failing."""
    host, colon, port = endpoint.rpartition(":")
    if not colon:
        host, port = endpoint, ""
    if not host or (colon and not (port.isdigit() and int(port) < 65536)):
        raise UsageError(f"--rdzv-endpoint '{endpoint}': give HOST or HOST:PORT, such as node0:29500 (a port from 0 "
                         "to 65535).")


def torchrun_args(spec: LaunchSpec, run_argv: list[str]) -> list[str]:
    ddp_timeout_seconds()  # a bad value fails here, once, not in every worker
    if spec.nproc_per_node < 1 or spec.nnodes < 1:
        raise UsageError("--nproc-per-node and --nnodes must be at least 1.")
    if not 0 <= spec.node_rank < spec.nnodes:
        raise UsageError(f"--node-rank must be from 0 to --nnodes minus 1 ({spec.nnodes - 1}), got {spec.node_rank}.")
    args = [f"--nproc-per-node={spec.nproc_per_node}", "--max-restarts=0"]
    if spec.nnodes == 1 and spec.rdzv_endpoint is None:
        unused = [flag for flag, value, default in (("--rdzv-backend", spec.rdzv_backend, "c10d"),
                                                    ("--rdzv-id", spec.rdzv_id, "blitz")) if value != default]
        if unused:  # --standalone picks its own rendezvous: said, as they are ignored (job scripts pass them)
            warnings.warn(f"{' and '.join(unused)} {'apply' if len(unused) > 1 else 'applies'} with --rdzv-endpoint "
                          "(several machines); on one machine torchrun picks its own rendezvous and ignores "
                          f"{'them' if len(unused) > 1 else 'it'}.", stacklevel=2)
        args.append("--standalone")  # a free local port; no rendezvous server needed
    else:
        if spec.rdzv_endpoint is None:
            raise UsageError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT (the same on every node).")
        check_endpoint(spec.rdzv_endpoint)
        if spec.nnodes > 1 and spec.rdzv_endpoint.endswith(":0"):  # each machine would pick its own port
            raise UsageError(f"--rdzv-endpoint '{spec.rdzv_endpoint}': port 0 (any free one) serves one machine; the "
                             "machines of a job must meet at a port they all know: give one, such as 29500.")
        args += [
            f"--nnodes={spec.nnodes}",
            f"--node-rank={spec.node_rank}",
            f"--rdzv-backend={spec.rdzv_backend}",
            f"--rdzv-endpoint={spec.rdzv_endpoint}",
            f"--rdzv-id={spec.rdzv_id}",
        ]
    return [*args, "-m", "blitz", "run", *run_argv]


def launch(spec: LaunchSpec, run_argv: list[str]) -> None:
    """Run ``blitz run <run_argv>`` under torchrun; a failed rank raises BlitzError."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    args = torchrun_args(spec, run_argv)
    finished = Path(tempfile.mkdtemp(prefix="blitz-launch-")) / "finished"
    quiet_torchrun_logs()
    try:
        with environ_set(worker_environment(spec, finished)):  # this process may go on (the Python API, tests): no trace left
            torchrun_main(args)
    except SignalException as exc:  # Ctrl-C or SIGTERM reached the launcher; workers save and stop
        if finished.is_file():  # too late: the run had finished (rank 0 printed its report)
            return
        raise Interrupted(_stopped_text(spec, f"by {exc.sigval.name}"), int(exc.sigval)) from None
    except ChildFailedError as exc:
        raise _failure(spec, exc) from None
    except Exception as exc:
        if not type(exc).__module__.startswith("torch.distributed.elastic.rendezvous"):
            raise
        text = str(exc).strip().splitlines()
        raise BlitzError(
            f"The DDP job could not meet at its rendezvous ({type(exc).__name__}: {text[0] if text else ''}). "
            "Is another job using this --rdzv-endpoint (and --rdzv-id)? Use another port or id."
        ) from None
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise BlitzError(f"torchrun could not start the job (exit {exc.code}).") from None
    finally:
        shutil.rmtree(finished.parent, ignore_errors=True)


def worker_environment(spec: LaunchSpec, finished: Path) -> dict[str, str]:
    """What the launch sets in the environment of the processes torchrun starts."""
    environment = {FINISHED_ENV: str(finished)}
    # On Ctrl-C (or a failed rank) torchrun signals the workers, then kills those still running
    # after a grace period: 30 s by default, short for a long evaluation or a big checkpoint
    # to finish; but ranks stuck in an NCCL collective wait it out in full when a rank fails.
    environment["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] = os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "120")
    if spec.nproc_per_node > 1:
        # torchrun's own default for several processes per machine, set here so that it does not
        # print a four-line warning about choosing it; --cpu-threads still sets each process's count.
        environment["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
    # torchrun handles SIGTERM, SIGINT, SIGHUP and SIGQUIT whatever this process ignored: a job
    # started with nohup (SIGHUP ignored) would stop when its terminal closed.
    environment[SIGNALS_ENV] = os.environ.get(SIGNALS_ENV) or ",".join(
        name for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
        if hasattr(signal, name) and signal.getsignal(getattr(signal, name)) is not signal.SIG_IGN
    )
    return environment


def quiet_torchrun_logs() -> None:
    """torchrun's own warnings about stopping workers, and its line on each failed worker, repeat
    what blitz says; --debug keeps them. (Its modules set their loggers' levels themselves when
    imported: call this after importing torch.distributed.run.)"""
    if not debug_requested():
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("torch.distributed.elastic"):
                logging.getLogger(name).setLevel(logging.CRITICAL)


def _stopped_text(spec: LaunchSpec, how: str) -> str:
    # On one machine rank 0 has said where it stopped and how to resume: nothing to add. On
    # the others, say it here (rank 0 runs elsewhere).
    if spec.nnodes == 1:
        return ""
    return (
        f"The DDP job was stopped {how}; the ranks stopped at the same step and rank 0 saved a "
        "checkpoint: resume with blitz run --resume RUN with the same --nproc-per-node, --nnodes "
        "and --rdzv-* options on every machine."
    )


def _failure(spec: LaunchSpec, exc: Any) -> BlitzError:
    """The error to raise for torchrun's ChildFailedError ``exc``: the ranks that failed and how."""
    rank, failure = exc.get_first_failure()
    code = failure.exitcode
    if code in (130, 143) and all(f.exitcode in (130, 143) for f in exc.failures.values()):
        return Interrupted(_stopped_text(spec, f"by a signal at rank {rank}"), code - 128)
    # Every failed rank is named: the one a collective lost its peer in often fails first.
    failed = ", ".join(_describe_exit(r, f.exitcode) for r, f in sorted(exc.failures.items()))
    message = f"DDP job failed: {failed} (errors are printed above); the other ranks were stopped."
    zero = exc.failures.get(0)
    if spec.nnodes == 1 and zero is not None and zero.exitcode == UsageError.exit_code and all(
        f.exitcode in (UsageError.exit_code, -signal.SIGTERM) for f in exc.failures.values()
    ):
        # Rank 0, on this machine, refused the run and said why in one line, and the others
        # refused it alike or were stopped by torchrun after it: nothing to add. (Exit 1 is
        # also any traceback's: there the line says which ranks failed.)
        return UsageError("")
    if code == UsageError.exit_code:
        # The first rank to fail refused the command line (the others then lost their peer):
        # exit 2, as the same run in one process
        return UsageError(message)
    return BlitzError(message)


@contextlib.contextmanager
def environ_set(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set inside, and as it was after."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _describe_exit(rank: int, code: int) -> str:
    if code < 0:
        try:
            return f"rank {rank} was killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"rank {rank} exited with code {code}"


def saved_process_count(meta: dict[str, Any]) -> int:
    """The processes per machine a run's checkpoint (its ``meta``) was saved by, when it ran on
    one machine (1 for older checkpoints and for runs across machines, whose options must be
    given again)."""
    world, per_node = int(meta.get("world_size", 1)), int(meta.get("local_world_size", 1))
    return world if world == per_node else 1


GLOBAL_OPTIONS_WITH_VALUES = ("--plugins-dir",)  # `blitz --plugins-dir DIR run ...`: blitz's, not a command's


def argv_after_run() -> list[str]:
    """The arguments given after the ``run`` command on this process's command line (a
    ``--plugins-dir`` folder named "run" before it is not the command)."""
    argv = sys.argv[1:]
    i = 0
    while i < len(argv):
        if argv[i] == "run":
            return argv[i + 1 :]
        i += 2 if argv[i] in GLOBAL_OPTIONS_WITH_VALUES else 1
    return argv
