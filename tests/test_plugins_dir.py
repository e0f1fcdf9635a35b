"""Plugins as plain .py files in a folder (`blitz --plugins-dir DIR`, BLITZ_PLUGINS_DIR), not installed."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blitz.checkpoint import load_checkpoint
from blitz.cli import app
from blitz.plugin_host import PLUGINS_DIR_ENV, reset_host

runner = CliRunner()

WIDENET = '''
from torch import nn
from blitz import hookimpl


def build(*, num_classes, input_shape, hidden: int = 16):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


@hookimpl
def register_models(register):
    register("widenet", build, description="flatten + 2 linear layers")
'''
TINY_RUN = ["--dataset", "random", "--dataset-arg", "length=40", "--dataset-arg", "test_length=20",
            "--epochs", "1", "--batch-size", "10"]


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "widenet.py").write_text(WIDENET)
    (folder / "broken.py").write_text('raise RuntimeError("oops")\n')
    (folder / "_helpers.py").write_text("raise SystemExit('a helper module is not a plugin')\n")
    (folder / "notes.txt").write_text("not python")
    return folder


def plugins(*options: str) -> dict[str, dict]:
    result = runner.invoke(app, [*options, "list-plugins", "--json"])
    assert result.exit_code == 0, result.output
    return {p["name"]: p for p in json.loads(result.output)}


def test_each_py_file_is_a_plugin_named_after_it(plugins_dir: Path) -> None:
    listed = plugins("--plugins-dir", str(plugins_dir))
    widenet = listed["widenet"]
    assert widenet["loaded"] and widenet["registers"] == {"models": ["widenet"]} and not widenet["builtin"]
    assert widenet["distribution"] == f"folder {plugins_dir}" and widenet["module"] == str(plugins_dir / "widenet.py")
    # a broken file is reported, not fatal; files starting with "_" and non-.py files are not plugins
    assert listed["broken"]["errors"] == ["failed to load: RuntimeError: oops (broken.py:1)"]
    assert "_helpers" not in listed and "notes" not in listed
    assert listed["lenet"]["loaded"]
    # the folder is for that command only: the next one in this process (the Python API, tests)
    # loaded it too, without asking
    assert not os.environ.get(PLUGINS_DIR_ENV) and "widenet" not in plugins()


def test_a_folder_plugin_trains_and_is_in_the_manifest(plugins_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["--plugins-dir", str(plugins_dir), "run", "--model", "widenet", *TINY_RUN, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "checkpoints" / "last.ckpt").meta["model"] == "widenet"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plugins"]["widenet"] == f"folder {plugins_dir}"


def test_the_environment_variable_does_the_same(plugins_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLUGINS_DIR_ENV, os.pathsep.join([str(plugins_dir), ""]))
    assert plugins()["widenet"]["loaded"]
    monkeypatch.setenv("BLITZ_LOAD_PLUGINS", "")  # folder plugins are third-party plugins
    reset_host()  # plugins load once per process
    assert plugins()["widenet"]["skipped"] == "not in BLITZ_LOAD_PLUGINS"


def test_a_file_reusing_an_installed_plugins_name_is_reported(tmp_path: Path) -> None:
    (tmp_path / "lenet.py").write_text(WIDENET)
    result = runner.invoke(app, ["--plugins-dir", str(tmp_path), "list-plugins", "--json"])
    rows = [p for p in json.loads(result.output) if p["name"] == "lenet"]
    assert [r["duplicate_of"] for r in rows] == [None, "blitz.plugins.lenet"]  # JSON readers can tell them apart
    assert [(r["distribution"], r["loaded"], r["errors"]) for r in rows] == [  # the built-in's row stays clean
        ("blitz-train", True, []),
        (f"folder {tmp_path}", False, [
            "not loaded: the plugin name 'lenet' is taken by blitz.plugins.lenet from blitz-train 0.1.0; plugin "
            "names must be unique, so rename this one"
        ]),
    ]


def test_a_file_named_like_a_standard_module_does_not_shadow_it(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text(WIDENET.replace('"widenet"', '"jsonnet"'))
    assert plugins("--plugins-dir", str(tmp_path))["json"]["registers"] == {"models": ["jsonnet"]}
    assert sys.modules["json"].__file__ != str(tmp_path / "json.py")


def test_a_missing_folder_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLUGINS_DIR_ENV, str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["list", "models"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"BLITZ_PLUGINS_DIR (or --plugins-dir) names '{tmp_path / 'nowhere'}', which is not a folder" in text
    assert "Traceback" not in result.output


def test_helpers_beside_a_plugin_can_be_imported_and_hidden_files_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "_layers.py").write_text("HIDDEN = 16\n")
    (folder / "helped.py").write_text(WIDENET.replace("hidden: int = 16", "hidden: int = _layers.HIDDEN")
                                      .replace('"widenet"', '"helped"').replace("from torch import nn", "import _layers\nfrom torch import nn"))
    (folder / ".hidden.py").write_text('print("must not run")\n')
    (folder / ".#helped.py").symlink_to(tmp_path / "nowhere")  # an editor's lock file: a dangling link
    result = runner.invoke(app, ["--plugins-dir", str(folder), "--plugins-dir", str(folder), "list-plugins", "--json"])
    assert result.exit_code == 0 and "must not run" not in result.output
    rows = [p for p in json.loads(result.output) if p["distribution"].startswith("folder")]
    assert [(r["name"], r["loaded"], r["registers"]) for r in rows] == [("helped", True, {"models": ["helped"]})]


def test_a_relative_folder_is_recorded_as_an_absolute_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "widenet.py").write_text(WIDENET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(PLUGINS_DIR_ENV, "p")
    assert plugins()["widenet"]["distribution"] == f"folder {tmp_path / 'p'}"


def test_an_empty_plugins_dir_is_refused_not_read_as_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "train.py").write_text('print("SIDE EFFECT")\n')
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["--plugins-dir", "", "list", "models"])
    assert result.exit_code == 2 and "--plugins-dir needs a folder" in result.output
    assert "SIDE EFFECT" not in result.output


def test_a_run_whose_plugin_is_not_loaded_now_says_which_and_how_to_load_it(
    plugins_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    trained = runner.invoke(app, ["--plugins-dir", str(plugins_dir), "run", "--model", "widenet", *TINY_RUN, "--out", str(run)])
    assert trained.exit_code == 0, trained.output
    reset_host()  # the next commands start as a new process would: without --plugins-dir
    monkeypatch.setenv(PLUGINS_DIR_ENV, "")
    hint = f"The run was trained with plugin(s) not loaded now: 'widenet' (from {plugins_dir}: pass --plugins-dir {plugins_dir})."
    for command in (["eval", str(run)], ["run", "--resume", str(run), "--epochs", "2"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and "Unknown model 'widenet'" in result.stderr, result.output
        assert hint in " ".join(result.stderr.split())


def test_list_plugins_check_fails_on_a_broken_plugin_and_a_slow_one_is_named(plugins_dir: Path) -> None:
    """For a plugin author's CI: --check exits 1 while any plugin has errors; a slow import shows."""
    (plugins_dir / "slowpoke.py").write_text(  # 0.3 s importing, 0.3 s registering: both count
        "import time\ntime.sleep(0.3)\nfrom blitz import hookimpl\n\n\n@hookimpl\ndef register_models(register):\n"
        "    time.sleep(0.3)\n")
    from blitz.cli import console

    width, console.width = console.width, 400  # a table row on one line
    try:
        checked = runner.invoke(app, ["--plugins-dir", str(plugins_dir), "list-plugins", "--check"])
    finally:
        console.width = width
    assert checked.exit_code == 1 and re.search(r"\(took \d+\.\d s to load\)", checked.output)  # broken.py fails it
    assert plugins("--plugins-dir", str(plugins_dir))["slowpoke"]["load_seconds"] >= 0.6
    (plugins_dir / "broken.py").unlink()
    assert runner.invoke(app, ["--plugins-dir", str(plugins_dir), "list-plugins", "--check"]).exit_code == 0


def test_a_plugin_reading_the_catalog_while_it_loads_gets_the_file_and_blitz_loads_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """register_recipes deriving from a built-in recipe: load_catalog() then must not build
    another plugin host (which loaded this plugin again, ~140 deep, until the recursion limit)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "derived.py").write_text(
        "import builtins\nfrom blitz import hookimpl\nfrom blitz.catalog import load_catalog\n"
        "LOADS = builtins.__dict__.setdefault('_blitz_test_derived_loads', [])  # across reloads of this file\n\n\n"
        "@hookimpl\ndef register_recipes(register):\n    LOADS.append(1)\n"
        "    base = load_catalog().recipe_values('tutorial')\n"
        "    register('tutorial_3', description=f'the tutorial, 3 epochs ({len(LOADS)} load)', **{**base, 'epochs': 3})\n"
    )
    import builtins

    monkeypatch.delitem(builtins.__dict__, "_blitz_test_derived_loads", raising=False)
    rows = json.loads(runner.invoke(app, ["--plugins-dir", str(folder), "list", "recipes", "tutorial_3", "--json"]).output)
    assert rows == [{"name": "tutorial_3", "description": "the tutorial, 3 epochs (1 load) (plugin derived)",
                     "measured": "", "plugin": "derived"}]


def recipes_plugin(folder: Path, name: str, *registrations: str) -> Path:
    """A plugins folder holding ``name``.py, whose register_recipes makes ``registrations``."""
    folder.mkdir(exist_ok=True)
    body = "".join(f"    register({r})\n" for r in registrations)
    (folder / f"{name}.py").write_text(f"from blitz import hookimpl\n\n\n@hookimpl\ndef register_recipes(register):\n{body}")
    return folder


def test_list_plugins_check_validates_plugin_recipes_and_load_plugins_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = recipes_plugin(tmp_path / "plugins", "recipes_bad", "'many_epochs', description='x', epochs='many', model='lenett'")
    checked = runner.invoke(app, ["--plugins-dir", str(folder), "list-plugins", "--check"])
    text = " ".join(checked.stderr.split())
    assert checked.exit_code == 1 and "Plugin 'recipes_bad' recipe 'many_epochs':" in text and "epochs" in text
    (folder / "recipes_bad.py").unlink()
    reset_host()
    assert runner.invoke(app, ["--plugins-dir", str(folder), "list-plugins", "--check"]).exit_code == 0
    monkeypatch.setenv("BLITZ_LOAD_PLUGINS", "nosuch")  # a misspelt name checks nothing: a failure
    reset_host()
    assert runner.invoke(app, ["--plugins-dir", str(folder), "list-plugins", "--check"]).exit_code == 1


def check_plugin_file(folder: Path, name: str, source: str) -> tuple[int, str]:
    """``list-plugins --check`` with one plugin file written into ``folder``: exit code, warnings on one line."""
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    reset_host()
    checked = runner.invoke(app, ["--plugins-dir", str(folder), "list-plugins", "--check"])
    return checked.exit_code, " ".join(checked.stderr.split())


def test_list_plugins_check_finds_a_default_its_own_type_hint_refuses(tmp_path: Path) -> None:
    """`width: int = "8"` fails every run that leaves width unset: --check says so before a user does."""
    folder = tmp_path / "plugins"
    code, text = check_plugin_file(folder, "sloppy", (
        "from torch import nn\nfrom blitz import hookimpl\n\n\n"
        "def build(*, num_classes: int, input_shape: tuple, width: int = '8', act: str = None) -> nn.Module:\n"
        "    return nn.Linear(1, 1)\n\n\n@hookimpl\ndef register_models(register):\n"
        "    register('sloppy', build, description='x')\n"
    ))
    assert code == 1, text
    assert ("Plugin 'sloppy' model 'sloppy': option 'width' defaults to '8', not a whole number as its type hint "
            "says: fix the default or the hint.") in text
    assert "'act'" not in text  # a default of None means unset, whatever the hint
    (folder / "sloppy.py").write_text((folder / "sloppy.py").read_text().replace("width: int = '8'", "width: int = 8"))
    reset_host()
    assert runner.invoke(app, ["--plugins-dir", str(folder), "list-plugins", "--check"]).exit_code == 0


def test_list_plugins_check_finds_a_factory_blitz_cannot_call(tmp_path: Path) -> None:
    """A misnamed keyword fails every run of the component, and only once it is used: --check says so first."""
    code, text = check_plugin_file(tmp_path / "plugins", "unfit", (
        "import torch\nfrom blitz import hookimpl\n\n\n"
        "def sgd(model, *, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:  # no momentum\n"
        "    return torch.optim.SGD(model.parameters(), lr=lr)\n\n\n"
        "def fine(model, *, lr, momentum, weight_decay, **options):\n"
        "    return torch.optim.SGD(model.parameters(), lr=lr)\n\n\n@hookimpl\ndef register_optimizers(register):\n"
        "    register('unfit', sgd, description='x')\n    register('fine', fine, description='x')\n"
    ))
    assert code == 1, text
    assert ("Plugin 'unfit' optimizer 'unfit': its factory cannot be called as blitz calls every optimizer factory, "
            "factory(model, *, lr, momentum, weight_decay) (got an unexpected keyword argument 'momentum'): see "
            "'Factory contracts' in docs/plugins.md.") in text
    assert "'fine'" not in text  # **options takes any keyword
    reset_host()
    assert runner.invoke(app, ["list-plugins", "--check"]).exit_code == 0  # every built-in factory fits


def test_list_plugins_check_finds_a_splits_parameter_without_its_default(tmp_path: Path) -> None:
    """Only `blitz eval` passes `splits`: without a default every `blitz run` of the source fails."""
    code, text = check_plugin_file(tmp_path / "plugins", "strict", (
        "from blitz import hookimpl\n\n\n"
        "def load(*, root, download, splits):\n    raise NotImplementedError\n\n\n"
        "def fine(*, root, download, splits=('train', 'test')):\n    raise NotImplementedError\n\n\n"
        "@hookimpl\ndef register_datasets(register):\n"
        "    register('strict', load, description='x')\n    register('fine', fine, description='x')\n"
    ))
    assert code == 1, text
    assert ("Plugin 'strict' dataset 'strict': its 'splits' parameter has no default, and only 'blitz eval' passes "
            "one: default it to (\"train\", \"test\").") in text
    assert "dataset 'fine'" not in text


def test_an_unknown_recipe_names_the_plugin_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = recipes_plugin(tmp_path / "plugins", "shipper", "'shipped', description='x', model='linear', dataset='random'")
    monkeypatch.setenv("BLITZ_LOAD_PLUGINS", "")
    result = runner.invoke(app, ["--plugins-dir", str(folder), "run", "--recipe", "shipped"])
    assert result.exit_code == 2
    assert "Unknown recipe 'shipped'. (BLITZ_LOAD_PLUGINS leaves out plugin(s) 'shipper'.)" in " ".join(result.stderr.split())
