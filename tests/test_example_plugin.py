"""The example plugin package, installed for real and driven through the ``blitz`` command line.

The session fixture pip-installs examples/blitz-example-plugin (a real wheel install, no
downloads) into a folder of its own under the temp directory, which the ``blitz`` processes
these tests start get on their PYTHONPATH: blitz finds it through its entry point as any
installed package, and the environment `make run` uses stays as it was (no ``stripes``,
``tiny_cnn`` or epoch-end hook in everyone's runs). The folder is keyed by the example's
contents, so reruns reuse it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch

from blitz import DataBundle, TensorSplit, UsageError
from blitz.plugin_host import LOAD_PLUGINS_ENV, PluginHost, discover, local_source

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "examples" / "blitz-example-plugin"
DISTRIBUTION = "blitz-example-plugin"
CHANCE = 0.25  # four balanced classes


def _declared() -> tuple[str, dict[str, str]]:
    """The version and blitz entry points that the example's pyproject.toml declares."""
    project = tomllib.loads((EXAMPLE_DIR / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project["version"], dict(project["entry-points"]["blitz"])


def _install_dir() -> Path:
    """Where the example is installed: a folder named after its sources' hash."""
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "blitz_example.py"):
        digest.update((EXAMPLE_DIR / name).read_bytes())
    return Path(tempfile.gettempdir()) / f"blitz-example-plugin-{digest.hexdigest()[:16]}"


@pytest.fixture(scope="session")
def example_installed() -> Path:
    """pip install the example package once into its own folder (serialized across pytest-xdist
    workers); returns that folder."""
    target = _install_dir()
    lock_path = Path(tempfile.gettempdir()) / "blitz-example-plugin-install.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not any(target.glob("blitz_example_plugin-*.dist-info")):
            staging = Path(tempfile.mkdtemp(prefix="blitz-example-plugin-staging-"))
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                 "--disable-pip-version-check", "--no-input", "-q", "--target", str(staging), str(EXAMPLE_DIR)],
                capture_output=True, text=True, timeout=300, check=False,
            )
            assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)  # whole or not at all: an interrupted install is not reused
    return target


def blitz(*args: str, tmp_path: Path, load_plugins: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m blitz ARGS`` in a fresh process, with runs and data kept under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if k not in (LOAD_PLUGINS_ENV, "BLITZ_DEBUG")}
    env.update(BLITZ_RUNS_DIR=str(tmp_path / "runs"), BLITZ_DATA_ROOT=str(tmp_path / "data"), COLUMNS="200")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_install_dir()), env.get("PYTHONPATH")]))
    if load_plugins is not None:
        env[LOAD_PLUGINS_ENV] = load_plugins
    return subprocess.run(
        [sys.executable, "-m", "blitz", *args], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def plugin_records(tmp_path: Path, load_plugins: str | None = None) -> dict[str, dict[str, Any]]:
    done = blitz("list-plugins", "--json", tmp_path=tmp_path, load_plugins=load_plugins)
    assert done.returncode == 0, done.stderr
    return {record["name"]: record for record in json.loads(done.stdout)}


@pytest.fixture(scope="module")
def example_module() -> ModuleType:
    """The example's module, loaded from its file (this process may predate the install)."""
    spec = importlib.util.spec_from_file_location("blitz_example_under_test", EXAMPLE_DIR / "blitz_example.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------
# installed: through the command line


def test_list_plugins_shows_the_example(example_installed: Path, tmp_path: Path) -> None:
    records = plugin_records(tmp_path)
    example = records["example"]
    assert example["distribution"] == DISTRIBUTION and example["version"] == _declared()[0]
    assert example["module"] == "blitz_example"
    assert example["builtin"] is False and example["loaded"] is True
    assert example["errors"] == [] and example["skipped"] is None
    assert example["registers"] == {"datasets": ["stripes"], "models": ["tiny_cnn"], "recipes": ["stripes_quick"]}
    assert example["hooks"] == ["on_epoch_end", "register_datasets", "register_models", "register_recipes"]
    names = list(records)
    assert all(records[n]["builtin"] for n in names[: names.index("example")]), "built-ins load first"


def test_list_shows_its_components(example_installed: Path, tmp_path: Path) -> None:
    done = blitz("list", "datasets", "str*", "--json", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [(r["name"], r["plugin"]) for r in json.loads(done.stdout)] == [("stripes", "example")]
    done = blitz("list", "models", "tiny*", "--json", tmp_path=tmp_path)
    assert [(r["name"], r["plugin"]) for r in json.loads(done.stdout)] == [("tiny_cnn", "example")]


@pytest.mark.slow
def test_run_learns_stripes_and_the_hook_logs_each_epoch(example_installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"  # the example's own recipe: its settings come from the installed plugin
    done = blitz("run", "--recipe", "stripes_quick", "--strategy", "cpu", "--out", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_done"] == 2
    assert summary["best_accuracy"] > CHANCE + 0.35, summary

    lines = (out / "example-plugin.log").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1"], ["epoch", "2"]]
    logged = [float(line.split()[3]) for line in lines]
    assert max(logged) == pytest.approx(summary["best_accuracy"], abs=1e-4)
    assert all(line.endswith("model tiny_cnn") for line in lines)
    listed = json.loads(blitz("list", "recipes", "stripes", "--json", tmp_path=tmp_path).stdout)
    assert [(r["name"], r["plugin"]) for r in listed] == [("stripes_quick", "example")]

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plugins"]["example"] == f"{DISTRIBUTION} {_declared()[0]}"


@pytest.mark.parametrize(("value", "loaded"), [("", False), ("someone_else", False), ("example", True)])
def test_load_plugins_env_controls_the_example(example_installed: Path, tmp_path: Path, value: str, loaded: bool) -> None:
    records = plugin_records(tmp_path, load_plugins=value)
    assert records["example"]["loaded"] is loaded
    assert records["example"]["skipped"] == (None if loaded else f"not in {LOAD_PLUGINS_ENV}")
    assert records["lenet"]["loaded"], "built-ins always load"


def test_disabled_example_makes_its_dataset_unknown(example_installed: Path, tmp_path: Path) -> None:
    done = blitz("run", "--dataset", "stripes", "--model", "lenet", "--epochs", "1", tmp_path=tmp_path, load_plugins="")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Unknown dataset 'stripes'" in done.stderr
    assert "blitz list datasets" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# --------------------------------------------------------------------------------------------
# the module itself, in-process


def test_stripes_contract(example_module: ModuleType) -> None:
    bundle = example_module.load_stripes(root=None, download=False, length=40, test_length=12, image_size=16, seed=3)
    assert isinstance(bundle, DataBundle)
    assert isinstance(bundle.train, TensorSplit) and isinstance(bundle.test, TensorSplit)
    assert bundle.train.images.shape == (40, 3, 16, 16) and bundle.train.images.dtype == torch.uint8
    assert bundle.test.images.shape == (12, 3, 16, 16)
    assert bundle.train.labels.dtype == torch.int64
    assert bundle.train.labels.bincount().tolist() == [10, 10, 10, 10]
    info = bundle.info
    assert info.num_classes == 4 and info.input_shape == (3, 16, 16)
    assert info.class_names == ("horizontal", "vertical", "diagonal", "antidiagonal")
    assert len(info.mean) == len(info.std) == 3
    assert all(0 < m < 1 for m in info.mean) and all(0 < s < 1 for s in info.std)
    again = example_module.load_stripes(length=40, test_length=12, image_size=16, seed=3)
    assert torch.equal(again.train.images, bundle.train.images), "same seed, same data"
    other = example_module.load_stripes(length=40, test_length=12, image_size=16, seed=4)
    assert not torch.equal(other.train.images, bundle.train.images)
    with pytest.raises(UsageError, match="length and test_length must be at least 1"):
        example_module.load_stripes(length=0)


def test_stripes_orientation_is_in_the_pixels(example_module: ModuleType) -> None:
    """Horizontal stripes vary down the rows and not along them; vertical ones the other way."""
    bundle = example_module.load_stripes(length=200, test_length=4, noise=0.0)
    x, y = bundle.train.images.float(), bundle.train.labels
    along_rows = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    down_cols = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    assert (down_cols[y == 0] > 2 * along_rows[y == 0]).all()
    assert (along_rows[y == 1] > 2 * down_cols[y == 1]).all()


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 16, 16), (3, 8, 12)])
def test_tiny_cnn_forward_backward(example_module: ModuleType, shape: tuple[int, ...]) -> None:
    model = example_module.build_tiny_cnn(num_classes=5, input_shape=shape, width=4)
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(UsageError, match="takes images"):
        example_module.build_tiny_cnn(num_classes=5, input_shape=(10,))


def test_on_epoch_end_appends_to_the_run_dir(example_module: ModuleType, tmp_path: Path) -> None:
    host = PluginHost([local_source(example_module, "example")])
    assert host.records["example"].loaded and host.records["example"].errors == []
    run = SimpleNamespace(run_dir=tmp_path, config=SimpleNamespace(model="m"))
    for epoch in (1, 2):
        assert host.call_lifecycle("on_epoch_end", run=run, epoch=epoch, metrics={"test_accuracy": 0.5}) == []
    assert (tmp_path / "example-plugin.log").read_text() == (
        "epoch 1 test_accuracy 0.5000 model m\nepoch 2 test_accuracy 0.5000 model m\n"
    )
    no_dir = SimpleNamespace(run_dir=None, config=run.config)
    assert host.call_lifecycle("on_epoch_end", run=no_dir, epoch=3, metrics={"test_accuracy": 0.5}) == []


def test_example_uses_only_the_public_api() -> None:
    source = (EXAMPLE_DIR / "blitz_example.py").read_text(encoding="utf-8")
    imports = [line.strip() for line in source.splitlines() if line.startswith(("import blitz", "from blitz"))]
    assert imports == ["from blitz import DataBundle, DataInfo, TensorSplit, UsageError, hookimpl"]


def test_discovered_after_install(example_installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process too, with its folder on sys.path: discover() finds it after every built-in."""
    monkeypatch.syspath_prepend(str(example_installed))
    importlib.invalidate_caches()
    sources = {s.name: s for s in discover()}
    assert sources["example"].distribution == DISTRIBUTION and not sources["example"].builtin
