"""DDP on the CPU (gloo): equivalence with one process, two nodes on localhost, and failing fast."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from blitz import runs
from blitz.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")

# --device cpu: these are the CPU (gloo) checks, also on a machine with GPUs
COMMON = [
    "--model", "lenet", "--dataset", "random", "--dataset-arg", "length=64", "--dataset-arg", "test_length=30",
    "--epochs", "2", "--lr", "0.05", "--no-shuffle", "--log-every", "4", "--device", "cpu",
]


def blitz(*args: object, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blitz", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt").model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_half_batches_equal_one_process(tmp_path):
    single = blitz("run", *COMMON, "--strategy", "cpu", "--batch-size", "8", "--out", tmp_path / "single")
    assert single.returncode == 0, single.stderr
    ddp = blitz("run", *COMMON, "--strategy", "ddp", "--nproc-per-node", "2", "--batch-size", "4", "--out", tmp_path / "ddp")
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    assert "ddp rank 0/2 on cpu (gloo)" in ddp.stdout
    assert ddp.stdout.count("Accuracy of the network") == 1  # only rank 0 prints
    a, b = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    # Evaluation covered the 30 test images once, not once per rank.
    assert "on the 30 test images" in ddp.stdout
    # The logged loss is the global batch's (all ranks), and images count every rank's.
    records = [runs.read_metrics(tmp_path / name / "metrics.jsonl") for name in ("single", "ddp")]
    steps = [[r["loss"] for r in rs if r["event"] == "step"] for rs in records]
    assert len(steps[0]) == len(steps[1]) > 2
    torch.testing.assert_close(steps[0], steps[1], rtol=1e-5, atol=1e-6)
    for rs in records:
        epochs = [r for r in rs if r["event"] == "epoch"]
        assert [round(r["images_per_s"] * r["seconds"]) for r in epochs] == [64, 64]


def test_two_nodes_on_localhost_train_to_completion(tmp_path):
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "blitz", "run", *COMMON, "--strategy", "ddp", "--batch-size", "4",
             "--nproc-per-node", "1", "--nnodes", "2", "--node-rank", str(rank),
             "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"test{port}", "--out", str(tmp_path / "run")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, out + err
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert sum("Accuracy of the network" in out for out, _ in outputs) == 1


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (from /proc: no dependence on pgrep)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command)"
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid:  # fields: state, ppid, ...
            children.append(int(stat.parent.name))
    return children


def _local_rank(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"LOCAL_RANK="):
            return item.split(b"=", 1)[1].decode()
    return None


def _signal_rank_1_while_training(out: Path, signum: int, env: dict[str, str] | None = None) -> tuple[int, str, float, int]:
    """Start a long 2-process job, send ``signum`` to rank 1 once it trains; return
    (exit code, stderr, seconds from the signal to the job's end, rank 1's pid)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "blitz", "run", "--model", "lenet", "--dataset", "random",
         "--dataset-arg", "length=50000", "--epochs", "50", "--batch-size", "4",
         "--strategy", "ddp", "--nproc-per-node", "2", "--device", "cpu", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
    )
    victim = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and victim is None:
            if (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").stat().st_size > 0:
                workers = [pid for child in _children(proc.pid) for pid in [child, *_children(child)]]
                victim = next((pid for pid in workers if _local_rank(pid) == "1"), None)
            time.sleep(0.5)
        assert victim is not None, "the DDP workers never started training"
        signalled_at = time.monotonic()
        os.kill(victim, signum)
        _, stderr = proc.communicate(timeout=180)
        return proc.returncode, stderr, time.monotonic() - signalled_at, victim
    finally:
        if victim is not None:
            try:
                os.kill(victim, signal.SIGKILL)  # a stopped (SIGSTOP) rank would linger
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()


def test_a_killed_rank_fails_the_job_fast_with_a_clear_message(tmp_path):
    code, stderr, elapsed, _ = _signal_rank_1_while_training(tmp_path / "run", signal.SIGKILL)
    assert code == 1
    assert "DDP job failed:" in stderr and "rank 1 was killed by SIGKILL" in stderr, stderr[-2000:]
    assert elapsed < 90


def test_a_hung_rank_fails_the_job_within_the_collective_timeout(tmp_path):
    # SIGSTOP: alive but silent, a hang rather than a crash
    code, stderr, elapsed, _ = _signal_rank_1_while_training(tmp_path / "run", signal.SIGSTOP, {"BLITZ_DDP_TIMEOUT": "10"})
    assert code == 1, stderr[-2000:]
    assert "DDP job failed:" in stderr and "rank 0" in stderr
    assert elapsed < 120


def test_sigterm_stops_every_rank_at_the_same_step_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["--model", "lenet", "--dataset", "random", "--dataset-arg", "length=20000",
            "--dataset-arg", "test_length=100", "--batch-size", "4", "--strategy", "ddp", "--nproc-per-node", "2", "--device", "cpu"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "blitz", "run", *args, "--epochs", "3", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").stat().st_size):
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr[-2000:]
    stops = [line for line in stderr.splitlines() if line.startswith("Stopped by SIGTERM at epoch")]
    assert len(stops) == 1, stderr[-2000:]  # the ranks agreed on the step; rank 0 says so, once
    assert f"resume with: blitz run --resume {out} (which starts the same 2 processes)" in stops[0]
    meta = load_checkpoint(out / "checkpoints" / "last.ckpt").meta
    assert meta["epoch"] == 1 and 0 < meta["step_in_epoch"] < 2500 and meta["world_size"] == 2

    # Another process count would take other shares of the epoch: refused, exit 2.
    other = blitz("run", "--resume", out, "--epochs", "1", "--nproc-per-node", "1")
    assert other.returncode == 2, other.stderr[-2000:]
    assert "stopped in the middle of epoch 1 with 2 process(es), and would resume with 1" in " ".join(other.stderr.split())
    assert "DDP job failed" not in other.stderr  # refused before any process started
    resumed = blitz("run", "--resume", out, "--epochs", "1")  # the saved count, by itself
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Resuming with --nproc-per-node 2" in resumed.stdout and "ddp rank 0/2" in resumed.stdout
    assert "Resuming from" in resumed.stdout and "epoch 1/1" in resumed.stdout



def test_every_process_loads_the_plugins_dir(tmp_path):
    from tests.test_plugins_dir import WIDENET

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "widenet.py").write_text(WIDENET)
    result = blitz("--plugins-dir", folder, "run", "--model", "widenet", *COMMON[2:], "--strategy", "ddp",
                   "--nproc-per-node", "2", "--batch-size", "4", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt").meta["model"] == "widenet"


def test_auto_under_torchrun_takes_the_device_as_ddp_does(monkeypatch):
    from blitz import UsageError
    from blitz.plugins.strategy_auto import build_auto

    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    strategy = build_auto(device="cpu")
    assert strategy.name == "ddp" and strategy.device.type == "cpu" and strategy.backend == "gloo"
    with pytest.raises(UsageError, match="--strategy ddp takes no --device 'cuda:1'"):
        build_auto(device="cuda:1")


def test_a_single_process_strategy_under_torchrun_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "blitz", "run", *COMMON, "--strategy", "cpu", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode != 0
    text = " ".join(result.stderr.split())
    assert "torchrun started 2 processes, but --strategy cpu trains in one; use --strategy ddp" in text
    assert not (tmp_path / "run" / "config.toml").exists()


def test_usage_errors_exit_2_before_and_after_the_launch(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my own file")
    started = time.monotonic()
    refused = blitz("run", *COMMON, "--strategy", "ddp", "--nproc-per-node", "2", "--out", tmp_path / "mine")
    assert refused.returncode == 2 and "is a folder that is not empty" in refused.stderr
    assert "rank" not in refused.stderr and time.monotonic() - started < 60  # no process was started
    # a usage error that only the ranks can see (the model's own argument check): still exit 2
    ranks = blitz("run", *COMMON, "--strategy", "ddp", "--nproc-per-node", "2", "--model-arg", "width=0",
                  "--out", tmp_path / "run")
    assert ranks.returncode == 2, ranks.stderr[-2000:]
    # every rank refuses it alike: rank 0 says it once, the launcher adds nothing
    assert ranks.stderr.count("--model-arg width must be a whole number") == 1, ranks.stderr[-2000:]
    assert "DDP job failed" not in ranks.stderr and "Traceback" not in ranks.stderr


def test_a_ddp_resume_to_fewer_epochs_is_refused_before_any_process_starts(tmp_path):
    """It was refused by every rank, after torchrun had started them and each had loaded the data."""
    out = tmp_path / "run"
    assert blitz("run", *COMMON, "--strategy", "cpu", "--out", out).returncode == 0
    started = time.monotonic()
    refused = blitz("run", "--resume", out, "--strategy", "ddp", "--nproc-per-node", "2", "--epochs", "1")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.count("--epochs 1 would end this run before where it is (2 epoch(s) done)") == 1
    assert "Strategy:" not in refused.stdout and time.monotonic() - started < 60  # no process was started


@pytest.mark.parametrize(("args", "expected"), [
    # rank 0 loads the data first: the other rank waited at a barrier, and died in it with gloo's traceback
    (["--dataset", "cifar10", "--data-root", "nowhere"], "CIFAR-10 not found: looked for"),
    # ddp shards whole examples: each rank trained 0 steps and the run "finished" with a loss of 0
    (["--dataset", "random", "--dataset-arg", "length=1"], "has 1 training example(s) for 2 processes: each would train on none"),
])
def test_a_ddp_run_refused_by_its_data_says_why_once(tmp_path, args, expected):
    result = blitz("run", "--strategy", "ddp", "--nproc-per-node", "2", "--device", "cpu", *args, "--out", tmp_path / "run")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count(expected) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "DDP job failed" not in result.stderr


def test_a_launch_leaves_no_trace_in_the_launching_process(monkeypatch):
    from blitz import UsageError
    from blitz.launch import FINISHED_ENV, SIGNALS_ENV, LaunchSpec, launch

    names = (FINISHED_ENV, SIGNALS_ENV, "OMP_NUM_THREADS", "TORCH_ELASTIC_SHUTDOWN_TIMEOUT")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UsageError):  # each rank refuses the unknown model
        launch(LaunchSpec(nproc_per_node=2), ["--model", "nosuch", "--dataset", "random", "--device", "cpu", "--strategy", "ddp"])
    # a later single-process run here must not look for the job's file, nor train on one thread
    assert not [name for name in names if name in os.environ]


def test_dataparallel_replicas_autocast_to_the_callers_dtype(monkeypatch):
    """torch runs each DataParallel replica in a new thread with autocast on or off only, so the
    dtype falls back to the device's default (fp16 on CUDA): a bf16 run would compute in fp16.
    blitz's DataParallel passes the caller's dtype on. Checked with CPU autocast (default bf16,
    asked for fp16) and threads started the way torch's ``parallel_apply`` starts them."""
    import importlib
    import threading

    from blitz.plugins.strategy_dataparallel import AutocastDataParallel

    seen: list[tuple[bool, torch.dtype]] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            return x

    def threaded_apply(modules, inputs, kwargs, devices):
        enabled = torch.is_autocast_enabled("cpu")

        def work(module, args):
            with torch.autocast("cpu", enabled=enabled):  # as torch's worker: no dtype
                module(*args)

        threads = [threading.Thread(target=work, args=pair) for pair in zip(modules, inputs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # the module, not the function of the same name that torch.nn.parallel exports
    monkeypatch.setattr(importlib.import_module("torch.nn.parallel.data_parallel"), "parallel_apply", threaded_apply)
    parallel = AutocastDataParallel(Probe())
    parallel.src_device_obj, parallel.device_ids = torch.device("cpu"), [0, 1]  # as on two GPUs
    inputs = [(torch.ones(1),), (torch.ones(1),)]
    with torch.autocast("cpu", dtype=torch.float16):
        parallel.parallel_apply([Probe(), Probe()], inputs, [{}, {}])
    assert seen == [(True, torch.float16)] * 2
    seen.clear()
    torch.nn.DataParallel.parallel_apply(parallel, [Probe(), Probe()], inputs, [{}, {}])  # no autocast: none added
    assert seen == [(False, torch.get_autocast_dtype("cpu"))] * 2


def test_more_ddp_processes_than_gpus_is_a_clear_error(monkeypatch):
    from blitz.errors import StrategyUnavailableError
    from blitz.plugins.strategy_ddp import DDPStrategy

    for name, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(StrategyUnavailableError, match=r"ddp process 1 on this machine has no GPU of its own \(1 visible\): start at most 1 per machine \(--nproc-per-node 1\), or give --device cpu"):
        DDPStrategy()
    assert DDPStrategy(device="cpu").backend == "gloo"  # CPUs: as many processes as wanted


def test_forward_passes_without_grad_leave_dataparallel_threads_free_to_write():
    """Tensors made under inference_mode cannot be changed in place outside it, and DataParallel's
    replica threads are outside it: a DataParallel model's evaluation runs under no_grad."""
    import threading

    from blitz.plugins.strategy_dataparallel import AutocastDataParallel
    from blitz.scoring import without_grad

    def write_in_a_thread(model: torch.nn.Module) -> list[BaseException]:
        errors: list[BaseException] = []
        with without_grad(model):
            made_here = torch.ones(3) * 2  # as DataParallel scatters the input, in the caller's thread
            assert not torch.is_grad_enabled()

            def replica_forward() -> None:
                try:
                    made_here.add_(1)  # e.g. a model normalizing its input in place
                except RuntimeError as exc:
                    errors.append(exc)

            thread = threading.Thread(target=replica_forward)
            thread.start()
            thread.join()
        return errors

    assert write_in_a_thread(AutocastDataParallel(torch.nn.Identity())) == []
    assert write_in_a_thread(torch.compile(AutocastDataParallel(torch.nn.Identity()))) == []  # --compile
    (error,) = write_in_a_thread(torch.nn.Identity())  # plain models keep inference_mode, and this is why not DP
    assert "Inplace update to inference tensor outside InferenceMode" in str(error)


def test_the_first_signal_names_the_stop_and_a_second_ctrl_c_stops_at_once():
    import signal

    from blitz.stopping import StopRequest

    stop = StopRequest()
    stop(signal.SIGINT)
    stop(signal.SIGTERM)  # torchrun's, after the user's Ctrl-C
    assert stop.signal_number == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        stop(signal.SIGINT)


def test_torchrun_variables_without_master_port_are_not_a_torchrun_launch(monkeypatch):
    from blitz.launch import launched_by_torchrun

    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert not launched_by_torchrun()  # init_process_group would fail on it with a raw ValueError
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert launched_by_torchrun()


def test_the_run_command_is_found_after_a_plugins_folder_named_run(monkeypatch):
    from blitz.launch import argv_after_run

    monkeypatch.setattr(sys, "argv", ["blitz", "--plugins-dir", "run", "run", "--strategy", "ddp", "--epochs", "1"])
    assert argv_after_run() == ["--strategy", "ddp", "--epochs", "1"]
    monkeypatch.setattr(sys, "argv", ["blitz", "--debug", "run", "--epochs", "1"])
    assert argv_after_run() == ["--epochs", "1"]


def test_a_usage_error_on_the_first_rank_to_fail_exits_2_as_alone(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "blitz", "run", "--strategy", "ddp", "--nproc-per-node", "2", "--dataset", "random",
         "--dataset-arg", "length=0", "--epochs", "1", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 2, result.stderr[-2000:]


def test_a_data_warning_is_printed_once_not_once_per_rank(tmp_path):
    from tests.test_data_sources import with_a_broken_image

    with_a_broken_image(tmp_path / "imgs")
    result = subprocess.run(
        [sys.executable, "-m", "blitz", "run", "--strategy", "ddp", "--nproc-per-node", "2", "--dataset", "imagefolder",
         "--dataset-arg", f"path={tmp_path / 'imgs'}", "--dataset-arg", "skip_bad=true", "--dataset-arg", "image_size=16",
         "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (result.stdout + result.stderr).count("Skipped 1 unreadable image(s)") == 1


def test_torchrun_leaves_alone_the_signals_this_process_ignores(monkeypatch):
    """Under nohup (SIGHUP ignored) torchrun installed its own SIGHUP handler: the job stopped
    when the terminal closed."""
    import signal

    import torch.distributed.run

    from blitz.launch import SIGNALS_ENV, LaunchSpec, launch

    seen = {}
    monkeypatch.setattr(torch.distributed.run, "main", lambda args: seen.setdefault("signals", os.environ[SIGNALS_ENV]))
    monkeypatch.delenv(SIGNALS_ENV, raising=False)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        launch(LaunchSpec(nproc_per_node=1), ["--dataset", "random"])
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert seen["signals"] == "SIGTERM,SIGINT,SIGQUIT"
    assert SIGNALS_ENV not in os.environ  # as it was
