"""A plugin author's mistakes, found by a review: each is named as the plugin's, before training,
and never breaks blitz's own components."""

from __future__ import annotations

import importlib
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import nn

from blitz import DataBundle, DataInfo, TensorSplit, hookimpl
from blitz.engine import Trainer
from blitz.errors import DataError, IncompatibleError, PluginError, UsageError
from blitz.plugin_host import PluginHost, PluginSource, discover, local_source
from blitz.runs import read_json
from tests.test_plugins import builtins, tiny_config


def host_with(plugin: object, name: str = "mine") -> PluginHost:
    return PluginHost([*builtins(), local_source(plugin, name)])


def fit(tmp_path: Path, plugin: object, **changes: Any):
    console = Console(file=StringIO(), width=300)
    trainer = Trainer(tiny_config(tmp_path, **changes), host=host_with(plugin), console=console)
    return trainer.fit(), console.file.getvalue()


def test_an_entry_point_reusing_a_builtin_name_is_reported_not_swapped_in(monkeypatch):
    from blitz import plugin_host

    def entry_point(name: str, value: str, dist: str) -> SimpleNamespace:
        module = importlib.import_module(value) if value.startswith("blitz.") else object()
        return SimpleNamespace(name=name, value=value, dist=SimpleNamespace(name=dist, version="1"), load=lambda: module)

    ours = plugin_host.BUILTIN_DISTRIBUTION
    points = [entry_point("optimizers", "myopt", "evil"), entry_point("optimizers", "blitz.plugins.optimizers", ours),
              entry_point("optimizers", "blitz.plugins.optimizers", ours)]  # the same one seen twice
    monkeypatch.setattr(plugin_host.importlib.metadata, "entry_points", lambda group: points)
    sources = discover()
    assert [(s.name, s.distribution) for s in sources] == [("optimizers", ours), ("optimizers", "evil")]
    host = PluginHost(sources)
    record = host.records["optimizers"]
    assert record.builtin and record.loaded and record.errors == []  # the built-in's row stays clean
    second = host.records["optimizers [myopt]"]
    assert (second.name, second.distribution, second.loaded) == ("optimizers", "evil", False)
    assert second.errors == [
        "not loaded: the plugin name 'optimizers' is taken by blitz.plugins.optimizers from blitz-train 1; "
        "plugin names must be unique, so rename this one"
    ]


def test_entry_points_in_a_group_named_like_blitz_s_are_pointed_out(monkeypatch):
    """`[project.entry-points."blitz.plugins"]`: blitz never sees the plugin; list-plugins says why."""
    from typer.testing import CliRunner

    from blitz import plugin_host
    from blitz.cli import app

    def dist(name: str, *points: tuple[str, str]) -> SimpleNamespace:
        return SimpleNamespace(name=name, entry_points=[SimpleNamespace(group=g, name=n) for g, n in points])

    dists = [dist("mine", ("blitz.plugins", "mine"), ("blitz.plugins", "more")), dist("typo", ("blits", "t")),
             dist("fine", ("blitz", "fine"), ("console_scripts", "blitz"), ("pytest11", "x"))]
    with monkeypatch.context() as patched:  # the real distributions again for loading the plugins below
        patched.setattr(plugin_host.importlib.metadata, "distributions", lambda: dists)
        misplaced = plugin_host.misplaced_entry_points()
    assert misplaced == [
        "distribution 'mine' declares entry point(s) 'mine', 'more' in the group 'blitz.plugins', which blitz does not "
        "read: a plugin's entry points go in the group 'blitz' ([project.entry-points.blitz] in pyproject.toml)",
        "distribution 'typo' declares entry point(s) 't' in the group 'blits', which blitz does not read: a plugin's "
        "entry points go in the group 'blitz' ([project.entry-points.blitz] in pyproject.toml)",
    ]
    monkeypatch.setattr(plugin_host, "misplaced_entry_points", lambda: misplaced)
    listed = CliRunner().invoke(app, ["list-plugins"])
    assert listed.exit_code == 0 and "Warning: distribution 'mine' declares entry point(s)" in " ".join(listed.stderr.split())


def test_sys_exit_while_importing_a_plugin_is_caught():
    def load() -> object:
        raise SystemExit("need a GPU")

    host = PluginHost([*builtins(), PluginSource("exits", load, "exits_module", "exits-dist", "1")])
    (error,) = host.records["exits"].errors
    assert error.startswith("failed to load: SystemExit: need a GPU (test_plugin_mistakes.py:")
    assert "sgd" in host.registries["optimizers"].names()


def test_a_plugin_that_registers_nothing_says_why():
    def register_models(register):  # no @hookimpl: pluggy never calls it
        register("forgotten", lambda **_: nn.Linear(1, 1))

    unmarked = SimpleNamespace(__name__="unmarked", register_models=register_models)
    empty = SimpleNamespace(__name__="empty")
    host = PluginHost([*builtins(), local_source(unmarked, "unmarked"), local_source(empty, "empty")])
    assert host.records["unmarked"].errors == [
        "registers nothing: register_models lack(s) the @hookimpl marker (from blitz import hookimpl)"
    ]
    assert host.records["empty"].errors[0].startswith("registers nothing: no function in it is marked @hookimpl")
    assert "forgotten" not in host.registries["models"].names()


def test_a_register_hook_without_its_register_argument_says_so() -> None:
    @hookimpl
    def register_datasets():  # pluggy calls it with nothing: it could register nothing
        pass

    @hookimpl
    def register_recipes():
        pass

    @hookimpl
    def register_models(register):  # the plugin's other hooks still count
        register("kept", lambda **_: nn.Linear(1, 1))

    plugin = SimpleNamespace(__name__="forgetful", register_datasets=register_datasets,
                             register_recipes=register_recipes, register_models=register_models)
    host = PluginHost([*builtins(), local_source(plugin, "forgetful")])
    assert host.records["forgetful"].errors == [
        f"{hook} takes no 'register' argument, so it registers nothing: write def {hook}(register): ... and "
        "call register(...) in it" for hook in ("register_datasets", "register_recipes")
    ]
    assert "kept" in host.registries["models"].names() and "forgetful" in host.failed()


def test_an_entry_point_naming_a_hook_function_says_to_name_the_module():
    @hookimpl
    def register_models(register):
        register("never", lambda **_: nn.Linear(1, 1))

    source = PluginSource("fn", lambda: register_models, "my_plugin:register_models", "my-plugin", "1")
    host = PluginHost([*builtins(), source])
    assert host.records["fn"].errors == [
        "registers nothing: its entry point names 'my_plugin:register_models', a function, not a module: "
        "name the module that holds the hooks, 'my_plugin'"
    ]
    assert "never" not in host.registries["models"].names()


def test_a_run_says_that_a_plugin_failed_to_load(tmp_path):
    def load():
        raise ImportError("No module named 'wandb'")

    host = PluginHost([*builtins(), PluginSource("tracker", load, "tracker_mod", "tracker-dist", "1")])
    console = Console(file=StringIO(), width=300)
    Trainer(tiny_config(tmp_path), host=host, console=console).fit()
    assert ("Warning: 1 plugin(s) have problems (failed to load, or some of what they register was refused): 'tracker'; "
            "see 'blitz list-plugins'.") in console.file.getvalue()


def test_one_hook_of_several_without_its_marker_is_reported_and_the_others_work():
    def register_models(register):
        register("kept", lambda **_: nn.Linear(1, 1))

    def register_optimizers(register):  # no @hookimpl
        register("forgotten", lambda model, **_: torch.optim.SGD(model.parameters(), lr=0.1))

    half = SimpleNamespace(__name__="half", register_models=hookimpl(register_models), register_optimizers=register_optimizers)
    host = PluginHost([*builtins(), local_source(half, "half")])
    assert host.records["half"].errors == [
        "register_optimizers lack(s) the @hookimpl marker (from blitz import hookimpl): not called; its other hooks are"
    ]
    assert "kept" in host.registries["models"].names() and "forgotten" not in host.registries["optimizers"].names()


def test_an_unknown_name_points_at_the_plugins_that_failed_to_load():
    from blitz.catalog import resolve
    from blitz.errors import UnknownNameError

    def load() -> object:
        raise ImportError("No module named 'timmm'")

    host = PluginHost([*builtins(), PluginSource("wh", load, "wh_module", "wh-dist", "1")])
    assert host.failed() == ["wh"]
    with pytest.raises(UnknownNameError, match=r"Unknown model 'wh'\. \(Plugin\(s\) 'wh' had problems loading or "
                                               r"registering and may be what registers it: see 'blitz list-plugins'"):
        resolve("models", "wh", host=host)


def test_an_unknown_name_says_when_more_plugins_failed_than_it_names():
    from blitz.errors import UnknownNameError

    error = UnknownNameError("model", "mine", ["lenet"], "blitz list models", broken=["a", "b", "c", "d"],
                             skipped=["e", "f", "g", "h"])
    assert "(Plugin(s) 'a', 'b', 'c' and 1 more had problems loading" in str(error)
    assert "(BLITZ_LOAD_PLUGINS leaves out plugin(s) 'e', 'f', 'g' and 1 more.)" in str(error)
    three = UnknownNameError("model", "mine", ["lenet"], "blitz list models", broken=["a", "b", "c"])
    assert "(Plugin(s) 'a', 'b', 'c' had problems loading" in str(three)  # no "and 0 more"


def test_the_same_module_declared_by_two_distributions_loads_once_as_the_builtin(monkeypatch):
    """A `blitz.egg-info` left in a checkout from before the rename declares the built-ins again."""
    from blitz import plugin_host

    module = importlib.import_module("blitz.plugins.optimizers")
    points = [
        SimpleNamespace(name="optimizers", value="blitz.plugins.optimizers", dist=SimpleNamespace(name=dist, version="1"),
                        load=lambda: module)
        for dist in ("blitz", plugin_host.BUILTIN_DISTRIBUTION)
    ]
    monkeypatch.setattr(plugin_host.importlib.metadata, "entry_points", lambda group: points)
    (source,) = discover()
    assert source.builtin
    assert PluginHost([source]).failed() == []


def test_a_name_the_catalog_gives_to_another_component_is_refused():
    class Shadow:
        @hookimpl
        def register_models(self, register):
            register("resnet18", lambda *, num_classes, input_shape: nn.Linear(1, num_classes), description="mine")

    host = host_with(Shadow(), "shadow")
    assert "resnet18" not in host.registries["models"].names()
    assert any(e.startswith("Plugin 'shadow' registers model 'resnet18', a name registry.toml gives to 'timm/resnet18'")
               for e in host.records["shadow"].errors)
    assert "models" not in host.records["shadow"].registers  # listed as "models: " with nothing after it


class Plugin:
    """Registers whatever the test puts in ``models``, ``datasets``, ``optimizers``, ``schedules``, ``loggers``."""

    def __init__(self, **kinds: dict[str, Any]) -> None:
        self.kinds = kinds

    def _register(self, kind: str, register) -> None:
        for name, factory in self.kinds.get(kind, {}).items():
            register(name, factory, description=name)

    @hookimpl
    def register_models(self, register):
        self._register("models", register)

    @hookimpl
    def register_datasets(self, register):
        self._register("datasets", register)

    @hookimpl
    def register_optimizers(self, register):
        self._register("optimizers", register)

    @hookimpl
    def register_schedules(self, register):
        self._register("schedules", register)

    @hookimpl
    def register_loggers(self, register):
        self._register("loggers", register)


def test_a_factory_missing_a_keyword_blitz_passes_is_the_plugins_bug(tmp_path):
    plugin = Plugin(models={"wrongsig": lambda *, num_classes, shape=None: nn.Linear(1, 1)})
    with pytest.raises(PluginError, match="Model 'wrongsig' of plugin 'mine' does not accept 'input_shape', which blitz passes"):
        fit(tmp_path, plugin, model="wrongsig")


def test_an_optimizer_factory_returning_none_is_named(tmp_path):
    plugin = Plugin(optimizers={"nothing": lambda model, *, lr, momentum, weight_decay: None})
    with pytest.raises(PluginError, match=r"Optimizer 'nothing' of plugin 'mine' returned NoneType, not a torch\.optim\.optimizer\.Optimizer"):
        fit(tmp_path, plugin, optimizer="nothing")


class RaisingLogger:
    def __init__(self, *, run_dir: Path) -> None:
        self.run_dir = run_dir

    def log(self, record: dict[str, Any]) -> None:
        raise RuntimeError("disk on fire")

    def close(self) -> None:
        raise RuntimeError("cannot close")


def test_a_logger_that_raises_is_turned_off_and_the_run_finishes(tmp_path):
    plugin = Plugin(loggers={"fragile": RaisingLogger})
    result, output = fit(tmp_path, plugin, loggers=["fragile", "jsonl"], epochs=2, log_every=1)
    assert len(result.history) == 2
    text = " ".join(output.split())
    assert "logger 'fragile' (plugin 'mine') raised in log(): RuntimeError: disk on fire; it gets no more records" in text
    assert text.count("disk on fire") == 1  # no records after its first error
    assert "raised in close(): RuntimeError: cannot close." in text  # but it is closed, as promised
    run = tmp_path / "run"
    assert read_json(run / "summary.json")["status"] == "finished"
    assert (run / "metrics.jsonl").read_text().count('"event": "epoch"') == 2  # the logger after it still ran


def _source(info: DataInfo, images: torch.Tensor, labels: torch.Tensor):
    def build(*, root, download):
        return DataBundle(TensorSplit(images, labels), TensorSplit(images, labels), info)

    return build


@pytest.mark.parametrize(
    ("info", "images", "labels", "message"),
    [
        (DataInfo(num_classes=2, class_names=("a", "b"), input_shape=(3, 8, 8)), torch.zeros(4, 3, 16, 16, dtype=torch.uint8),
         torch.zeros(4, dtype=torch.long), r"^Dataset 'odd' of plugin 'mine' train images have shape \(3, 16, 16\) each, but its DataInfo says input_shape "
         r"\(3, 8, 8\): a plugin bug\.$"),
        (DataInfo(num_classes=2, class_names=("a", "b"), input_shape=(3, 8, 8)), torch.zeros(4, 3, 8, 8, dtype=torch.int64),
         torch.zeros(4, dtype=torch.long), "images are torch.int64: give uint8 pixels"),
        (DataInfo(num_classes=2, class_names=("a", "b"), input_shape=(3, 8, 8)), torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
         torch.zeros(4), r"built an invalid TensorSplit \(TensorSplit labels must be integer class indices, not torch.float32\)"),
        (DataInfo(num_classes=2, class_names=("a", "b"), input_shape=(3, 8, 8), mean=(0.5,), std=(0.2,)), torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
         torch.zeros(4, dtype=torch.long), r"declares mean \[0.5\] and std \[0.2\] for 3 channels"),
        (DataInfo(num_classes=2, class_names=("a", "b"), input_shape=(3, 8, 8), mean=(0.5,) * 3, std=(0.2, 0.0, 0.2)), torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
         torch.zeros(4, dtype=torch.long), "std above 0"),
        (DataInfo(num_classes=2, class_names=("a", "b"), input_shape=(3, 8, 8)), torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
         torch.tensor([0, 1, 2, 1]), r"Dataset 'odd' of plugin 'mine' train labels range 0\.\.2, outside 0\.\.1 for its 2 classes"),
        (DataInfo(num_classes=2, class_names=("a", "b"), input_shape=(3, 8, 8)), torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
         torch.tensor([0, -1, 1, 1]), r"Dataset 'odd' of plugin 'mine' train labels range -1\.\.1, outside 0\.\.1"),
        (DataInfo(num_classes=1, class_names=("a",), input_shape=(3, 8, 8)), torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
         torch.zeros(4, dtype=torch.long), r"Dataset 'odd' has 1 class\(es\): a classifier needs at least two"),
    ],
)
def test_a_data_source_inconsistent_with_its_own_datainfo_fails_before_training(tmp_path, info, images, labels, message):
    plugin = Plugin(datasets={"odd": _source(info, images, labels)}, models={"small": lambda *, num_classes, input_shape: nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))})
    with pytest.raises((DataError, UsageError, PluginError), match=message):
        fit(tmp_path, plugin, dataset="odd", model="small", dataset_args={}, batch_size=2)


def test_a_syntax_error_in_a_plugin_names_the_plugins_file_and_line(tmp_path):
    bad = tmp_path / "syntaxbad.py"
    bad.write_text("x = 1\n\ndef broken(:\n    pass\n")

    def load() -> object:
        import importlib.util

        spec = importlib.util.spec_from_file_location("syntaxbad", bad)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    host = PluginHost([PluginSource("syntaxbad", load, "syntaxbad", "syntaxbad-dist", "1")])
    (error,) = host.records["syntaxbad"].errors
    assert error.startswith("failed to load: SyntaxError: ") and error.endswith("(syntaxbad.py:3)")


class LabelledDataset(torch.utils.data.Dataset):
    """A Dataset (not a TensorSplit) whose labels run past num_classes."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        return torch.zeros(3, 8, 8, dtype=torch.uint8), i % 5  # 0..4, for 3 classes


def test_a_dataset_split_with_labels_past_num_classes_is_a_data_error_not_a_traceback(tmp_path):
    info = DataInfo(num_classes=3, class_names=("a", "b", "c"), input_shape=(3, 8, 8))
    source = lambda *, root, download: DataBundle(LabelledDataset(), LabelledDataset(), info)  # noqa: E731
    plugin = Plugin(datasets={"loose": source}, models={"small": lambda *, num_classes, input_shape: nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))})
    with pytest.raises(DataError, match=r"^Dataset 'loose' of plugin 'mine' gave a label outside 0\.\.2 at step \d+ of epoch 1"):
        fit(tmp_path, plugin, dataset="loose", model="small", dataset_args={}, batch_size=8)


class LabelledImages(LabelledDataset):
    """The same labels on LeNet-sized images: LeNet trains these through its direct gradients."""

    def __getitem__(self, i: int):
        return torch.zeros(3, 32, 32, dtype=torch.uint8), i % 5


def test_labels_past_num_classes_are_a_data_error_through_lenets_direct_gradients(tmp_path):
    info = DataInfo(num_classes=3, class_names=("a", "b", "c"), input_shape=(3, 32, 32))
    source = lambda *, root, download: DataBundle(LabelledImages(), LabelledImages(), info)  # noqa: E731
    with pytest.raises(DataError, match=r"^Dataset 'loose' of plugin 'mine' gave a label outside 0\.\.2 at step \d+ of epoch 1"):
        fit(tmp_path, Plugin(datasets={"loose": source}), dataset="loose", model="lenet", dataset_args={}, batch_size=4)


def test_sys_exit_in_a_register_hook_is_the_plugins_error_not_blitzs_end():
    class Exits:
        @hookimpl
        def register_models(self, register):
            raise SystemExit("refusing")

    host = host_with(Exits(), "exits")
    assert host.records["exits"].errors == ["raised in register_models: SystemExit: refusing (test_plugin_mistakes.py:"
                                            + host.records["exits"].errors[0].rsplit(":", 1)[1]]
    assert "lenet" in host.registries["models"].names()


def test_sys_exit_in_a_lifecycle_hook_is_a_warning_and_training_goes_on(tmp_path):
    class Exits:
        @hookimpl
        def on_epoch_end(self, run, epoch, metrics):
            raise SystemExit(3)

    result, output = fit(tmp_path, Exits())
    assert result.final is not None and "raised in on_epoch_end: SystemExit: 3" in output
    assert read_json(tmp_path / "run" / "summary.json")["status"] == "finished"


def test_lifecycle_hooks_run_in_pluggy_order_and_wrappers_are_skipped_with_a_warning(tmp_path):
    calls: list[str] = []

    def plugin(name: str, **options: bool) -> object:
        class One:
            @hookimpl(**options)
            def on_train_start(self, run):
                calls.append(name)

        return One()

    class Wrapper:
        @hookimpl(wrapper=True)
        def on_train_start(self, run):
            calls.append("wrapper")
            return (yield)

    sources = [*builtins(), local_source(plugin("a"), "a"), local_source(plugin("b", tryfirst=True), "b"),
               local_source(plugin("c", trylast=True), "c"), local_source(plugin("d"), "d"), local_source(Wrapper(), "w")]
    console = Console(file=StringIO(), width=300)
    host = PluginHost(sources)
    assert host.records["w"].errors == [  # at load time, in `blitz list-plugins`, not only in a run
        "on_train_start is declared a wrapper (hookwrapper/wrapper=True), which blitz's hooks do not support: it is "
        "skipped (declare it with plain @hookimpl)"
    ]
    Trainer(tiny_config(tmp_path), host=host, console=console).fit()
    assert calls == ["b", "a", "d", "c"]
    assert "'w' (from local): on_train_start is declared a wrapper" in console.file.getvalue()


def test_a_hook_with_an_argument_the_spec_lacks_is_one_line_at_the_plugins_line():
    class Wrong:
        @hookimpl
        def on_epoch_end(self, run, epoch, metric):
            pass

    host = host_with(Wrong(), "wrong")
    (error,) = host.records["wrong"].errors
    assert "\n" not in error and "pluggy" not in error and "{'metric'}" in error
    assert error.startswith("failed to load: hookimpl definition: on_epoch_end(run, epoch, metric); Argument(s)")
    assert error.endswith(f"(test_plugin_mistakes.py:{Wrong.on_epoch_end.__code__.co_firstlineno})")


class ClosingLogger:
    closed: list[str] = []

    def __init__(self, *, run_dir: Path) -> None:
        pass

    def log(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        ClosingLogger.closed.append("closed")


@pytest.mark.parametrize(("error", "expected"), [(UsageError("no such sink"), UsageError), (KeyError("bug"), PluginError)])
def test_loggers_built_before_one_that_fails_are_closed_and_the_new_run_folder_goes(tmp_path, error, expected):
    def failing(*, run_dir: Path) -> Any:
        raise error

    ClosingLogger.closed = []
    plugin = Plugin(loggers={"good": ClosingLogger, "bad": failing})
    with pytest.raises(expected):
        fit(tmp_path, plugin, loggers=["good", "bad"])
    assert ClosingLogger.closed == ["closed"]
    assert not (tmp_path / "run").exists()  # only its start files were there: no '? ?/?' row in `blitz runs`


def test_a_strategy_whose_setup_fails_is_torn_down(tmp_path):
    from blitz.components import Strategy

    calls: list[str] = []

    class NoDevice(Strategy):
        def __init__(self) -> None:
            super().__init__(torch.device("cpu"))

        def setup(self) -> None:
            calls.append("setup")
            raise UsageError("no such device")

        def teardown(self) -> None:
            calls.append("teardown")

    class Strategies:
        @hookimpl
        def register_strategies(self, register):
            register("nodevice", lambda *, device=None: NoDevice(), description="cannot run")

    with pytest.raises(UsageError, match="no such device"):
        fit(tmp_path, Strategies(), strategy="nodevice")
    assert calls == ["setup", "teardown"]


def test_bad_registration_metadata_is_the_plugins_error_and_listings_still_work():
    class Odd:
        @hookimpl
        def register_optimizers(self, register):
            register("nodesc", lambda model, *, lr, momentum, weight_decay: None, description=None)

        @hookimpl
        def register_models(self, register):
            register("notfamily", lambda **kw: None, description="x", list_variants=lambda: ["a"])
            register("fam/*", lambda *, variant, **kw: None, description="a family",
                      list_variants=lambda: 1 / 0, validate_variant=lambda v: {}[v])

    host = host_with(Odd(), "odd")
    errors = " | ".join(host.records["odd"].errors)
    assert "optimizer 'nodesc' with description None: give a string" in errors
    assert "model 'notfamily' with list_variants=" in errors and "only for a family" in errors
    assert "nodesc" not in host.registries["optimizers"].names() and "sgd" in host.registries["optimizers"].names()
    models = host.registries["models"]
    with pytest.raises(PluginError, match=r"Plugin 'odd': validate_variant of model 'fam/\*' raised KeyError: 'x'"):
        models.get("fam/x")
    with pytest.raises(PluginError, match="list_variants of model 'fam/\\*' raised ZeroDivisionError"):
        models.variants(next(e for e in models.entries() if e.name == "fam/*"))


class Items(torch.utils.data.Dataset):
    """A Dataset split giving ``item`` for every index."""

    def __init__(self, item: Any) -> None:
        self.item = item

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> Any:
        return self.item


EIGHT = DataInfo(num_classes=2, class_names=("a", "b"), input_shape=(3, 8, 8))


@pytest.mark.parametrize(("item", "message"), [
    ((torch.zeros(3, 9, 9, dtype=torch.uint8), 0), r"train item 0 has shape \(3, 9, 9\), but its DataInfo says input_shape \(3, 8, 8\)"),
    ((torch.zeros(3, 8, 8, dtype=torch.int32), 0), "train item 0 is torch.int32: give uint8 pixels"),
    ((torch.zeros(3, 8, 8, dtype=torch.uint8), 1.0), "train item 0 has label 1.0: give a class index"),
    ((torch.zeros(3, 8, 8, dtype=torch.uint8), torch.tensor([1])), "train item 0 has label tensor"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), "train item 0 is Tensor: give \\(image, label\\) pairs"),
])
def test_a_dataset_split_whose_items_contradict_its_datainfo_fails_before_training(tmp_path, item, message):
    def build(*, root, download):
        return DataBundle(Items(item), Items((torch.zeros(3, 8, 8, dtype=torch.uint8), 0)), EIGHT)

    plugin = Plugin(datasets={"items": build}, models={"small": lambda *, num_classes, input_shape: nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))})
    with pytest.raises(DataError, match=f"Dataset 'items' of plugin 'mine' {message}"):
        fit(tmp_path, plugin, dataset="items", model="small", dataset_args={}, batch_size=2)


def test_tensor_split_labels_must_be_one_index_per_example():
    with pytest.raises(ValueError, match=r"shape \(N,\), not \(4, 1\)"):
        TensorSplit(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, 1, dtype=torch.long))


def test_a_model_whose_forward_has_a_bug_is_named_with_the_dataset_before_training(tmp_path):
    class Buggy(nn.Module):
        def forward(self, x):
            return self.missing_layer(x)

    plugin = Plugin(models={"buggy": lambda *, num_classes, input_shape: Buggy()})
    with pytest.raises(IncompatibleError, match="Model 'buggy' does not fit dataset 'random'.*AttributeError: 'Buggy' object has no attribute 'missing_layer'"):
        fit(tmp_path, plugin, model="buggy")


def test_a_plugin_error_with_markup_characters_is_listed_as_text(monkeypatch):
    from typer.testing import CliRunner

    from blitz import plugin_host
    from blitz.cli import app, console

    class Brackets:
        @hookimpl
        def register_models(self, register):
            raise ValueError("bad [/] input [red]")

    monkeypatch.setattr(plugin_host, "_host", host_with(Brackets(), "brackets"))
    monkeypatch.setattr(console, "width", 400)
    result = CliRunner().invoke(app, ["list", "plugins"])
    assert result.exit_code == 0 and "bad [/] input [red]" in result.output


def test_a_load_error_is_one_line_at_the_plugins_own_line(tmp_path):
    import sys

    package = tmp_path / "weightsplugin"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import torch\n\nWEIGHTS = torch.load('/nonexistent/weights.pt')  # fails inside torch\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        host = PluginHost([*builtins(), PluginSource(
            "weights", lambda: importlib.import_module("weightsplugin"), "weightsplugin", "weights-dist", "1")])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("weightsplugin", None)
    (error,) = host.records["weights"].errors
    assert error.startswith("failed to load: FileNotFoundError: ") and error.endswith("(__init__.py:3)")

    def multi_line() -> object:
        raise ValueError("first line\nsecond line")

    host = PluginHost([*builtins(), PluginSource("multi", multi_line, "multi_module", "multi-dist", "1")])
    assert host.records["multi"].errors == ["failed to load: ValueError: first line (test_plugin_mistakes.py:"
                                            + str(multi_line.__code__.co_firstlineno + 1) + ")"]
    typo = PluginHost([*builtins(), PluginSource("typo", lambda: importlib.import_module("ep_mdo"), "ep_mdo", "d", "1")])
    assert typo.records["typo"].errors == [
        "failed to load: ModuleNotFoundError: No module named 'ep_mdo' (the module its entry point names: a misspelling?)"
    ]


def _typo_model(*, num_classes, input_shape):
    return nn.Linear(3 * 8 * 8, num_classes, bais=False)  # the plugin's bug: a misspelt keyword


def _positional_only(num_classes, input_shape, /):
    return nn.Linear(1, num_classes)


def _broken_data(*, root, download):
    return None + 1  # the plugin's bug


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "typo"}, r"Model 'typo' of plugin 'mine' failed while being built \(TypeError: .*'bais'\): a bug in the plugin, not in your command"),
        ({"model": "posonly"}, r"Model 'posonly' of plugin 'mine' cannot be called as blitz calls model factories \(.*positional-only"),
        ({"dataset": "broken", "dataset_args": {}}, r"Dataset 'broken' of plugin 'mine' failed while being built \(TypeError: unsupported operand"),
    ],
)
def test_a_factorys_own_type_error_is_the_plugins_bug_not_a_usage_error(tmp_path, changes, message):
    plugin = Plugin(models={"typo": _typo_model, "posonly": _positional_only}, datasets={"broken": _broken_data})
    with pytest.raises(PluginError, match=message) as info:
        fit(tmp_path, plugin, **changes)
    assert info.value.exit_code == 1


def _typo_with_option(*, num_classes, input_shape, width: int = 4):
    return nn.Linear(3 * 8 * 8, num_classes, bais=False)  # refuses 'bais', which the user never gave


def _typed_model(*, num_classes, input_shape, width: int = 4, depth=1):  # depth: no type hint to check
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, width), *[nn.Identity()] * depth, nn.Linear(width, num_classes))


def _typo_optimizer(model, *, lr, momentum, weight_decay):
    return torch.optim.SGD(model.parameters(), lr=lr, momentm=momentum)  # the plugin's bug


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"model": "typo_width", "model_args": {"width": 8}}, PluginError,
         r"Model 'typo_width' of plugin 'mine' failed while being built \(TypeError: .*'bais'\): a bug in the plugin"),
        ({"optimizer": "typo_sgd"}, PluginError,
         r"Optimizer 'typo_sgd' of plugin 'mine' failed while being built \(TypeError: .*'momentm'\): a bug in the plugin"),
        ({"model": "typed", "model_args": {"depth": "abc"}}, UsageError,
         r"^Model 'typed' could not be built with --model-arg \{'depth': 'abc'\} \(.*\): check those values' types\.$"),
        ({"model": "typed", "model_args": {"width": "abc"}}, UsageError,
         r"^Model 'typed': --model-arg width must be a whole number, got 'abc'\.$"),
        ({"model": "typed", "model_args": {"widht": 8}}, UsageError, r"^Model 'typed' takes no argument 'widht' \(did you mean 'width'\?\)"),
    ],
)
def test_a_type_error_is_the_users_only_where_their_options_can_cause_it(tmp_path, changes, error, message):
    """Blitz always passes an optimizer lr, momentum and weight decay: they are not the user's
    options; nor is a keyword the factory passes to something else."""
    plugin = Plugin(models={"typo_width": _typo_with_option, "typed": _typed_model}, optimizers={"typo_sgd": _typo_optimizer})
    with pytest.raises(error, match=message) as info:
        fit(tmp_path, plugin, **changes)
    assert info.value.exit_code == (1 if error is PluginError else 2)


def test_a_run_on_a_contested_name_says_whose_component_it_uses_and_records_it(tmp_path):
    """The second registration of a name is refused at load time, but the user who installed that
    plugin asked for its component: the run says whose it got, and the manifest records it."""
    second = SimpleNamespace(__name__="second", register_models=hookimpl(
        lambda register: register("lenet", lambda **_: nn.Linear(1, 1), description="another lenet")))
    host = PluginHost([*builtins(), local_source(second, "second")])
    console = Console(file=StringIO(), width=300)
    Trainer(tiny_config(tmp_path, model="lenet"), host=host, console=console).fit()
    assert ("Warning: model 'lenet' comes from plugin 'lenet'; plugin(s) 'second' register(s) the name too, "
            "refused") in console.file.getvalue()
    manifest = read_json(tmp_path / "run" / "manifest.json")
    assert manifest["components"]["model"] == {"name": "lenet", "component": "lenet", "plugin": "lenet"}
    assert manifest["components"]["dataset"]["plugin"] == "random"
    assert set(manifest["components"]) == {"model", "dataset", "optimizer", "schedule", "strategy", "logger 1"}


def test_an_optimizer_over_none_or_some_of_the_models_parameters_is_warned(tmp_path):
    def elsewhere(model, *, lr, momentum, weight_decay):
        return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)  # trains nothing of the model

    def head_only(model, *, lr, momentum, weight_decay):
        return torch.optim.SGD(list(model.parameters())[-2:], lr=lr)

    plugin = Plugin(optimizers={"elsewhere": elsewhere, "head_only": head_only})
    _, printed = fit(tmp_path, plugin, model="lenet", optimizer="elsewhere")  # a warning: it may copy results back
    assert ("Warning: Optimizer 'elsewhere' of plugin 'mine' holds none of the model's 10 trainable parameter tensors: "
            "unless it copies its results into them, the model will not train") in printed
    _, printed = fit(tmp_path / "b", plugin, model="lenet", optimizer="head_only")
    assert ("Warning: Optimizer 'head_only' of plugin 'mine' updates 2 of the model's 10 trainable parameter "
            "tensors; the other 8 stay as they are") in printed


def _pixels_as(dtype: torch.dtype, mean: tuple[float, ...] = (), std: tuple[float, ...] = ()):
    def load(*, root, download):
        images = torch.arange(16 * 3 * 8 * 8).remainder(256).to(dtype).view(16, 3, 8, 8)
        split = TensorSplit(images, torch.arange(16) % 2)
        return DataBundle(train=split, test=split, info=DataInfo(2, (3, 8, 8), ("a", "b"), mean, std))
    return load


def test_pixels_stored_as_floats_are_warned_and_a_mean_in_0_255_units_refused(tmp_path):
    plugin = Plugin(datasets={
        "float255": _pixels_as(torch.float32), "float_mean": _pixels_as(torch.float32, (0.5,) * 3, (0.25,) * 3),
        "mean255": _pixels_as(torch.uint8, (125.0,) * 3, (60.0,) * 3),
    })
    _, printed = fit(tmp_path / "a", plugin, dataset="float255", model="linear", dataset_args={})
    assert ("Warning: Dataset 'float255' gives float inputs with values up to 255: blitz uses float inputs as they "
            "are, unnormalized") in printed
    _, printed = fit(tmp_path / "b", plugin, dataset="float_mean", model="linear", dataset_args={})
    assert "Warning: Dataset 'float_mean' declares a mean and std, but its inputs are floats, used as they are" in printed
    with pytest.raises(DataError, match=r"^Dataset 'mean255' of plugin 'mine' declares mean \[125.0, 125.0, 125.0\] and std .*: they "
                                        r"are in units of pixel values scaled to \[0, 1\] .*: a plugin bug\.$"):
        fit(tmp_path / "c", plugin, dataset="mean255", model="linear", dataset_args={})

    def features(*, root, download):  # not images: any scale, and statistics in their own units
        split = TensorSplit(torch.arange(16 * 6, dtype=torch.float32).view(16, 6), torch.arange(16) % 2)
        return DataBundle(train=split, test=split, info=DataInfo(2, (6,), ("a", "b"), (40.0,), (30.0,)))

    _, printed = fit(tmp_path / "d", Plugin(datasets={"features": features}), dataset="features", model="linear",
                     dataset_args={})
    assert "gives float inputs with values up to" not in printed  # their scale is theirs
    assert "Warning: Dataset 'features' declares a mean and std, but its inputs are floats" in printed  # not applied


@pytest.mark.parametrize(
    ("split", "message"),
    [(lambda: TensorSplit(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0.0, 1.0, 0.0, 1.0])),
      r"built an invalid TensorSplit \(TensorSplit labels must be integer class indices, not torch.float32\)"),
     (lambda: TensorSplit(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0])),
      r"built an invalid TensorSplit \(4 images but 3 labels\)"),
     (lambda: DataInfo(2, (3, 8, 8), ("only one",)), r"built an invalid DataInfo \(1 class names for 2 classes\)")],
)
def test_a_data_source_that_builds_invalid_blitz_objects_is_the_plugins_bug(tmp_path, split, message):
    """Not "could not be built" (exit 2, as if the user's options were wrong): the plugin's bug."""
    plugin = Plugin(datasets={"sloppy": lambda *, root, download: split()})
    with pytest.raises(PluginError, match=r"^Dataset 'sloppy' of plugin 'mine' " + message + r": a bug in the plugin") as info:
        fit(tmp_path, plugin, dataset="sloppy", dataset_args={})
    assert info.value.exit_code == 1


def test_an_invalid_datainfo_from_the_users_own_option_is_their_usage_error(tmp_path):
    def forwarding(*, root, download, classes: int = 2):  # passes --dataset-arg classes on, unchecked
        split = TensorSplit(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]))
        return DataBundle(train=split, test=split, info=DataInfo(classes, (3, 8, 8), ("a", "b")[:classes]))

    with pytest.raises(UsageError, match=r"^Dataset 'forwarding' could not be built with options \{'classes': 0\}") as info:
        fit(tmp_path, Plugin(datasets={"forwarding": forwarding}), dataset="forwarding", dataset_args={"classes": 0})
    assert info.value.exit_code == 2


class OptionsLogger:
    """A logger that takes options, as one for an experiment tracker would (a project name)."""

    made: list[dict[str, Any]] = []

    def __init__(self, *, run_dir: Path, project: str = "default", every: int = 1) -> None:
        OptionsLogger.made.append({"project": project, "every": every})
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")

    def log(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("logger_args", "outcome"),
    [({"tracker": {"project": "cifar", "every": 5}}, {"project": "cifar", "every": 5}),
     ({}, {"project": "default", "every": 1}),
     ({"tracker": {"every": "often"}}, r"^Logger 'tracker': --logger-arg tracker\.every must be a whole number, got 'often'\.$"),
     ({"tracker": {"every": 0}}, r"^Logger 'tracker' rejected its options \{'every': 0\}: every must be at least 1, got 0$"),
     ({"tracker": {"projet": "x"}}, r"^Logger 'tracker' takes no argument 'projet' \(did you mean 'project'\?\)")],
)
def test_a_logger_takes_its_options_from_logger_args(tmp_path, logger_args, outcome):
    OptionsLogger.made = []
    plugin = Plugin(loggers={"tracker": OptionsLogger})
    if isinstance(outcome, dict):
        fit(tmp_path, plugin, loggers=["jsonl", "tracker"], logger_args=logger_args)
        assert OptionsLogger.made == [outcome]
    else:
        with pytest.raises(UsageError, match=outcome):
            fit(tmp_path, plugin, loggers=["jsonl", "tracker"], logger_args=logger_args)


def test_a_loggers_own_value_error_without_options_is_the_plugins_bug(tmp_path):
    def buggy(*, run_dir):
        return int("x")  # the plugin's bug: no option of the user's is involved

    with pytest.raises(PluginError, match=r"^Logger 'buggy' of plugin 'mine' failed while being built \(ValueError: "
                                          r"invalid literal .*\): a bug in the plugin") as info:
        fit(tmp_path, Plugin(loggers={"buggy": buggy}), loggers=["jsonl", "buggy"])
    assert info.value.exit_code == 1


def _raising(exc: BaseException):
    def factory(*args, **kwargs):
        raise exc
    return factory


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "boom"}, r"^Model 'boom' of plugin 'mine' failed while being built \(RuntimeError: CUDA error: out of "
                            r"memory; CUDA kernel errors might be reported\); --debug shows where\.$"),
        ({"dataset": "unreadable", "dataset_args": {}},
         r"^Dataset 'unreadable' of plugin 'mine' failed while being built \(PermissionError: \[Errno 13\] denied\)"),
        ({"optimizer": "keyerr"}, r"^Optimizer 'keyerr' of plugin 'mine' failed while being built \(KeyError: 'lr'\)"),
        ({"loggers": ["noimport"]}, r"^Logger 'noimport' of plugin 'mine' failed while being built \(ImportError: no wandb\)"),
        ({"model": "exits"}, r"^Model 'exits' of plugin 'mine' failed while being built \(SystemExit: 3\)"),  # not blitz's end
    ],
)
def test_any_other_exception_of_a_factory_is_one_line_naming_the_plugin(tmp_path, changes, message):
    """Not a traceback: the component, its plugin and the exception's first line; --debug for the rest."""
    plugin = Plugin(
        models={"boom": _raising(RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be reported")),
                "exits": _raising(SystemExit(3))},
        datasets={"unreadable": _raising(PermissionError(13, "denied"))},
        optimizers={"keyerr": _raising(KeyError("lr"))}, loggers={"noimport": _raising(ImportError("no wandb"))},
    )
    with pytest.raises(PluginError, match=message) as info:
        fit(tmp_path, plugin, **changes)
    assert info.value.exit_code == 1 and "\n" not in str(info.value)


def test_a_misspelt_register_keyword_is_the_plugins_error_not_silently_metadata():
    def register_models(register):
        register("typo_desc", lambda **_: nn.Linear(1, 1), descripton="A model")
        register("own_key", lambda **_: nn.Linear(1, 1), description="kept", paper="arXiv:2404.00498", citation="x",
                 variants=3, hparams={})

    plugin = SimpleNamespace(__name__="typos", register_models=hookimpl(register_models))
    host = PluginHost([*builtins(), local_source(plugin, "typos")])
    assert host.records["typos"].errors == [
        "Plugin 'typos' registered model 'typo_desc' with 'descripton=': did you mean 'description'? (blitz reads "
        "description, hyperparameters, list_variants, reads_data_root, validate_variant; other keys are kept as they are.)"
    ]
    assert "typo_desc" not in host.registries["models"].names()
    assert host.registries["models"].get("own_key").metadata == {
        "paper": "arXiv:2404.00498", "citation": "x", "variants": 3, "hparams": {}}


def test_reads_data_root_is_a_datasets_true_or_false():
    def register_datasets(register):
        register("made", lambda *, root, download: None, reads_data_root="no")
        register("typo", lambda *, root, download: None, read_data_root=False)

    def register_models(register):  # not a dataset: the model's own key
        register("own", lambda **_: nn.Linear(1, 1), reads_data_root="kept")

    plugin = SimpleNamespace(__name__="roots", register_datasets=hookimpl(register_datasets),
                             register_models=hookimpl(register_models))
    host = PluginHost([*builtins(), local_source(plugin, "roots")])
    assert host.records["roots"].errors == [
        "Plugin 'roots' registered dataset 'made' with reads_data_root='no': give True or False (False: it reads "
        "no files, so --data-root is not used).",
        "Plugin 'roots' registered dataset 'typo' with 'read_data_root=': did you mean 'reads_data_root'? (blitz reads "
        "description, hyperparameters, list_variants, reads_data_root, validate_variant; other keys are kept as they are.)",
    ]
    assert host.registries["models"].get("own").metadata == {"reads_data_root": "kept"}


def test_failed_plugins_are_those_missing_components_not_a_second_one_of_a_taken_name():
    def register_models(register):
        raise RuntimeError("needs a licence file")

    raising = SimpleNamespace(__name__="raising", register_models=hookimpl(register_models))
    lenet_again = SimpleNamespace(__name__="lenet_again", register_models=hookimpl(lambda register: None))
    host = PluginHost([*builtins(), local_source(raising, "raising"), local_source(lenet_again, "lenet")])
    assert host.failed() == ["raising"]  # the second 'lenet' is reported in its row, but lenet is there


@pytest.mark.parametrize("keyword", ["hyperparams", "hparams", "hyper_params", "descr"])
def test_abbreviated_register_keywords_blitz_reads_are_refused(keyword):
    def register_optimizers(register):
        register("bigsgd", lambda model, *, lr, momentum, weight_decay: torch.optim.SGD(model.parameters(), lr=lr),
                 **{keyword: {"lr": 0.5}})

    plugin = SimpleNamespace(__name__="abbrev", register_optimizers=hookimpl(register_optimizers))
    host = PluginHost([*builtins(), local_source(plugin, "abbrev")])
    (error,) = host.records["abbrev"].errors
    assert f"with '{keyword}=': did you mean" in error
    assert host.failed() == ["abbrev"]  # and an unknown 'bigsgd' points at it


class _LockedNet(nn.Module):
    """BatchNorm on 8x8 maps (a batch of one trains) and an attribute deepcopy cannot copy."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        import threading

        self.lock = threading.Lock()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 8 * 8, num_classes))

    def forward(self, x):
        return self.body(x)


def test_batch_norm_check_needs_no_copy_of_the_model(tmp_path):
    plugin = Plugin(models={"locked": lambda *, num_classes, input_shape: _LockedNet(num_classes)})
    result, _ = fit(tmp_path, plugin, model="locked", batch_size=1, limit_steps=2,
                    dataset_args={"length": 8, "test_length": 4, "shape": [3, 8, 8]})
    assert result.history


def test_a_dataset_refusal_over_several_lines_keeps_its_reason(tmp_path):
    def checked(*, root, download, length: int = 8):
        raise ValueError("1 validation error for Opts\nlength\n  Input should be greater than 0")

    plugin = Plugin(datasets={"checked": checked})
    with pytest.raises(UsageError, match=r"1 validation error for Opts; length; Input should be greater than 0"):
        fit(tmp_path, plugin, dataset="checked", dataset_args={"length": -3})


def test_a_trainer_refuses_a_misspelt_option_before_it_loads_any_data(tmp_path):
    """Trainer (the Python API, and every process of a ddp job) checks every component's options
    when it is made; a logger's only where the run has loggers (write_run)."""
    from blitz.plugins.random_data import load_random

    loaded: list[int] = []

    def recorded(**options):
        loaded.append(1)
        return load_random(**options)

    plugin = Plugin(datasets={"recorded": recorded}, loggers={"tracker": OptionsLogger})
    with pytest.raises(UsageError, match=r"^Model 'lenet' takes no argument 'widht' \(did you mean 'width'\?\)"):
        Trainer(tiny_config(tmp_path, dataset="recorded", model_args={"widht": 2}), host=host_with(plugin))
    assert loaded == []
    misspelt_logger = dict(dataset="recorded", loggers=["jsonl", "tracker"], logger_args={"tracker": {"projet": "x"}})
    with pytest.raises(UsageError, match=r"^Logger 'tracker' takes no argument 'projet'"):
        Trainer(tiny_config(tmp_path, **misspelt_logger), host=host_with(plugin))
    assert loaded == []
    Trainer(tiny_config(tmp_path, epochs=1, **misspelt_logger), host=host_with(plugin), write_run=False).fit()
    assert loaded == [1]  # no run folder, no loggers: their options are not the run's concern


def test_a_schedule_factory_returning_the_optimizer_is_refused(tmp_path):
    """`return optimizer` has step() and state_dict() too: taken as the schedule, it would step
    the optimizer a second time after every step, silently."""
    plugin = Plugin(schedules={"same": lambda optimizer, *, total_steps: optimizer})
    with pytest.raises(PluginError, match=r"^Schedule 'same' of plugin 'mine' returned \w+, an optimizer, not a "
                                          r"learning-rate scheduler"):
        fit(tmp_path, plugin, schedule="same")


class _LayersInAList(nn.Module):
    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__()
        self.layers = [nn.Flatten(), nn.Linear(features, num_classes)]  # a plain list: not registered

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def test_a_model_without_trainable_parameters_is_named_not_the_optimizer(tmp_path):
    """Layers kept in a plain list leave the model without parameters: the optimizer's "empty
    parameter list" would blame it, and the user's --lr."""
    plugin = Plugin(models={"listed": lambda *, num_classes, input_shape: _LayersInAList(3 * 32 * 32, num_classes)})
    with pytest.raises(PluginError, match=r"^Model 'listed' of plugin 'mine' has no trainable parameters, so nothing to train: .*nn\.ModuleList"):
        fit(tmp_path, plugin, model="listed")


def test_a_model_whose_every_parameter_is_frozen_is_told_so_not_sent_to_modulelist(tmp_path):
    def frozen(*, num_classes, input_shape):
        model = nn.Linear(3 * 32 * 32, num_classes)
        model.requires_grad_(False)
        return nn.Sequential(nn.Flatten(), model)

    with pytest.raises(PluginError, match=r"^Model 'frozen' of plugin 'mine' has no trainable parameters, so nothing to train: every one has requires_grad=False \(frozen\): leave some trainable\.$"):
        fit(tmp_path, Plugin(models={"frozen": frozen}), model="frozen")


class _AuxLogits(nn.Module):
    """As torchvision's Inception in training mode: (logits, aux logits), a tensor in eval mode."""

    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> Any:
        logits = self.linear(x.flatten(1))
        return (logits, logits) if self.training else logits


def test_a_model_whose_training_output_is_not_logits_is_named_not_a_traceback(tmp_path):
    """The fit check runs in eval mode; a model that returns something else in training mode
    failed inside the loss with a traceback."""
    plugin = Plugin(models={"aux": lambda *, num_classes, input_shape: _AuxLogits(3 * 32 * 32, num_classes)})
    with pytest.raises(PluginError, match=r"^Model 'aux' of plugin 'mine' returned tuple in training mode, not "
                                          r"logits of shape \(50, 10\)") as info:
        fit(tmp_path, plugin, model="aux")
    assert "\n" not in str(info.value)


def test_a_missing_argument_inside_a_factory_is_the_plugins_bug_even_with_options(tmp_path):
    """The user's options cannot leave out an argument of a call inside the factory (`check_fraction`
    without `zero_allowed`): the plugin's bug, not "rejected its options"."""
    from torch.optim.lr_scheduler import LambdaLR

    from blitz.options import check_fraction

    def warm(optimizer, *, total_steps: int, warmup: float = 0.1):
        check_fraction("warmup", warmup)  # type: ignore[call-arg]  # the mistake
        return LambdaLR(optimizer, lambda step: 1.0)

    plugin = Plugin(schedules={"warm": warm})
    with pytest.raises(PluginError, match=r"^Schedule 'warm' of plugin 'mine' failed while being built \(TypeError: "
                                          r"check_fraction\(\) missing 1 required keyword-only argument"):
        fit(tmp_path, plugin, schedule="warm", schedule_args={"warmup": 0.2})


def test_an_unknown_option_lists_the_options_a_factory_takes_by_position_or_keyword(tmp_path):
    """`def build(num_classes, input_shape, width=8)` takes `width`, as `blitz list` says, not "no options"."""
    plugin = Plugin(models={"plain": lambda num_classes, input_shape, width=8: nn.Linear(1, 1)})
    with pytest.raises(UsageError, match=r"^Model 'plain' takes no argument 'widht' \(did you mean 'width'\?\); "
                                         r"it takes: width\.$"):
        fit(tmp_path, plugin, model="plain", model_args={"widht": 4})
