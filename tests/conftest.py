"""Shared fixtures: a small CIFAR-format data folder, and runs kept out of the repository."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

# The suite tests the CPU paths (CI has no GPU), including the messages for a machine without
# one; hiding GPUs (before CUDA starts, also for the subprocesses tests launch) makes `make test`
# mean the same on every machine. The GPU checks are bench/gpu_check.sh.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np
import pytest

from blitz.plugin_host import reset_host


def write_cifar_batch(path: Path, images: np.ndarray, labels: list[int], label: str = "batch") -> None:
    """One file in the official CIFAR-10 python format (protocol 2, bytes keys like the originals)."""
    entry = {b"batch_label": label.encode(), b"labels": labels, b"data": images, b"filenames": [b"x.png"] * len(labels)}
    with path.open("wb") as f:
        pickle.dump(entry, f, protocol=2)


def py2_str(value: bytes) -> bytes:
    """A Python 2 str in a pickle (SHORT_BINSTRING or BINSTRING): read back as latin1 text."""
    return b"U" + bytes([len(value)]) + value if len(value) < 256 else b"T" + struct.pack("<i", len(value)) + value


def write_py2_cifar_batch(path: Path, images: np.ndarray, labels: list[int], label: str = "batch") -> None:
    """One file as the official ones are written: Python 2's cPickle, protocol 2, no memo,
    str for bytes (even the pixels), and numpy 1's ``numpy.core.multiarray._reconstruct``."""
    n, size = images.shape
    dtype = b"cnumpy\ndtype\n" + py2_str(b"u1") + b"K\x00K\x01\x87R(K\x03" + py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + py2_str(b"b") + b"\x87R"
             + b"(K\x01J" + struct.pack("<i", n) + b"J" + struct.pack("<i", size) + b"\x86" + dtype + b"\x89" + py2_str(images.tobytes()) + b"tb")
    entry = (py2_str(b"batch_label") + py2_str(label.encode()) + py2_str(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in labels)
             + b"e" + py2_str(b"data") + array + py2_str(b"filenames") + b"](" + py2_str(b"x.png") * len(labels) + b"e")
    path.write_bytes(b"\x80\x02}(" + entry + b"u.")


def make_cifar(root: Path, per_batch: int = 20, test: int = 40, seed: int = 0) -> Path:
    """A CIFAR-10 folder under ``root`` with learnable images: each class has its own colour."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> tuple[np.ndarray, list[int]]:
        labels = rng.integers(0, 10, n)
        base = (labels[:, None] * 25).astype(np.int64)
        noise = rng.integers(0, 30, (n, 3072))
        return np.clip(base + noise, 0, 255).astype(np.uint8), [int(x) for x in labels]

    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", *batch(per_batch), label=f"training batch {i} of 5")
    write_cifar_batch(folder / "test_batch", *batch(test), label="testing batch 1 of 1")
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": per_batch}, f, protocol=2)
    return root


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    return make_cifar(tmp_path / "data")


@pytest.fixture(autouse=True)
def isolated_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes runs under its own tmp folder, never into the working tree."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("BLITZ_RUNS_DIR", str(runs))
    monkeypatch.delenv("BLITZ_LOAD_PLUGINS", raising=False)
    monkeypatch.setenv("BLITZ_PLUGINS_DIR", "")  # none; and `--plugins-dir` changes are undone
    monkeypatch.delenv("BLITZ_DATA_ROOT", raising=False)
    return runs


@pytest.fixture(autouse=True)
def fresh_plugins():
    """Tests that install a custom plugin host never leak it into the next test."""
    yield
    reset_host()

