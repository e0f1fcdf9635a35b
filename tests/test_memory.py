"""blitz.memory: freed blocks kept for reuse, so that training steps stop page-faulting."""

from __future__ import annotations

import os
import platform

import pytest
from typer.testing import CliRunner

from blitz import cli, memory
from tests.fresh_process import printed_by

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
# where this environment chose malloc's behaviour itself, keep_freed_memory leaves it alone
malloc_left_to_blitz = pytest.mark.skipif(memory.user_chose_malloc(os.environ), reason="MALLOC_* or LD_PRELOAD set")

# Page faults per step of lenet_fast's kind (LeNet, batch 128, channels-last, SGD), after warm-up
# steps, in a fresh process.
FAULTS_PER_STEP = """
import resource, torch, torch.nn.functional as F
from blitz.memory import keep_freed_memory
from blitz.plugins.lenet import LeNet
torch.set_num_threads(1)
if {keep}:
    assert keep_freed_memory()
cl = torch.channels_last
net = LeNet().to(memory_format=cl)
optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(128, 3, 32, 32).contiguous(memory_format=cl), torch.randint(0, 10, (128,))
def step():
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    optimizer.step()
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@glibc_only
@malloc_left_to_blitz
def test_kept_memory_stops_the_page_faults_of_every_step() -> None:
    # glibc's default gives freed activations back to the OS, and each step faults them in
    # again: 400-2,300 faults a step here (measured; fewer while other tests run), 0-60 with the
    # freed blocks kept.
    default = float(printed_by(FAULTS_PER_STEP.format(keep=False)))
    kept = float(printed_by(FAULTS_PER_STEP.format(keep=True)))
    assert kept < 100 and default > kept + 200, (kept, default)


@pytest.mark.parametrize(
    "environ",
    [
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
    ],
)
def test_malloc_the_user_chose_is_left_alone(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert memory.user_chose_malloc(environ)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert memory.keep_freed_memory() is False


def test_other_settings_are_not_a_choice_of_malloc() -> None:
    assert not memory.user_chose_malloc({"GLIBC_TUNABLES": "glibc.pthread.rseq=0", "LD_PRELOAD": "/opt/libfoo.so"})


def test_off_glibc_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("", ""))
    assert memory.keep_freed_memory() is False


def test_every_command_keeps_freed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True) or True)
    result = CliRunner().invoke(cli.app, ["list", "models"])
    assert result.exit_code == 0, result.output
    assert calls == [True]


def test_the_cli_imports_no_torch_for_it() -> None:
    # `blitz --help` and `blitz runs` start without torch; this module must not change that.
    assert printed_by("import sys, blitz.memory; print('torch' in sys.modules)") == "False"


class FakeLibc:
    """mallopt as a glibc that allows at most ``limit`` for the mmap threshold; records what was set."""

    def __init__(self, limit: int) -> None:
        self.limit, self.set = limit, dict[int, int]()

    def mallopt(self, parameter: int, value: int) -> int:
        if parameter == memory._M_MMAP_THRESHOLD and value > self.limit:
            return 0
        self.set[parameter] = value
        return 1


@pytest.fixture
def any_glibc(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A glibc process whose user set nothing about malloc (on any test machine)."""
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("glibc", "2.36"))
    for name in (*memory._USER_SETTINGS, "GLIBC_TUNABLES", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("limit", "threshold"), [(1 << 40, 64 << 20), (32 << 20, 32 << 20)])
def test_the_largest_threshold_this_glibc_allows_is_set(limit: int, threshold: int, any_glibc: pytest.MonkeyPatch) -> None:
    libc = FakeLibc(limit)
    any_glibc.setattr(memory.ctypes, "CDLL", lambda name: libc)
    assert memory.keep_freed_memory() is True
    assert libc.set == {memory._M_MMAP_THRESHOLD: threshold, memory._M_TRIM_THRESHOLD: memory.TRIM_THRESHOLD}


def test_a_glibc_that_refuses_every_threshold_is_reported(any_glibc: pytest.MonkeyPatch) -> None:
    any_glibc.setattr(memory.ctypes, "CDLL", lambda name: FakeLibc(0))
    assert memory.keep_freed_memory() is False
