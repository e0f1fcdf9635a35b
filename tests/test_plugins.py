"""The plugin system: registries, loading with failure isolation, every hook, and the CLI view.

Plugins here are small in-process objects loaded with ``local_source``, next to blitz's own
built-ins, so the tests do not depend on which third-party plugins happen to be installed.
Each hook has a ``test_hook_<name>`` test (tests/test_hooks_documented.py checks this).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import nn
from typer.testing import CliRunner

from blitz import DataBundle, DataInfo, Strategy, TensorSplit, hookimpl
from blitz.cli import app
from blitz.config import RunConfig
from blitz.engine import Trainer
from blitz.errors import PluginError, UnknownNameError, UsageError
from blitz.plugin_host import (
    LOAD_PLUGINS_ENV,
    PluginHost,
    PluginSource,
    discover,
    local_source,
    reset_host,
)
from blitz.registry import Entry, Registry

# --------------------------------------------------------------------------------------------
# helpers


def builtins() -> list[PluginSource]:
    """blitz's own plugins only, whatever else is installed."""
    return [s for s in discover() if s.builtin]


def host_with(*plugins: tuple[object, str], with_builtins: bool = False) -> PluginHost:
    sources = builtins() if with_builtins else []
    return PluginHost([*sources, *(local_source(obj, name) for obj, name in plugins)])


def failing_source(name: str, exc: Exception) -> PluginSource:
    """A plugin whose import raises ``exc``."""

    def load() -> object:
        raise exc

    return PluginSource(name, load, f"{name}_module", f"{name}-dist", "9.9")


def make_model(*, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), num_classes))


class ModelsPlugin:
    """Registers models ``names`` with the factory ``factory``."""

    def __init__(self, *names: str, factory: Any = make_model) -> None:
        self.names, self.factory = names, factory

    @hookimpl
    def register_models(self, register):
        for name in self.names:
            register(name, self.factory, description=f"test model {name}")


class Recorder:
    """Records every lifecycle call it receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def on_train_start(self, run):
        self.calls.append(("on_train_start", {"run": run, "model": run.model, "run_dir": run.run_dir}))

    @hookimpl
    def on_epoch_end(self, run, epoch, metrics):
        self.calls.append(("on_epoch_end", {"run": run, "epoch": epoch, "metrics": dict(metrics)}))

    @hookimpl
    def on_train_end(self, run, metrics):
        self.calls.append(("on_train_end", {"run": run, "metrics": dict(metrics)}))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def tiny_config(tmp_path: Path, **changes: Any) -> RunConfig:
    values: dict[str, Any] = dict(
        model="lenet", dataset="random", epochs=1, batch_size=50, strategy="cpu",
        dataset_args={"length": 100, "test_length": 50}, out=tmp_path / "run",
    )
    values.update(changes)
    return RunConfig(**values)


def quiet() -> Console:
    return Console(file=StringIO(), width=200)


@pytest.fixture
def installed_host() -> Iterator[Any]:
    """Install a PluginHost as the process's host (what the CLI uses); forget it afterwards."""

    def install(host: PluginHost) -> PluginHost:
        reset_host(host)
        return host

    yield install
    reset_host()


@pytest.fixture(autouse=True)
def no_plugin_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)


# --------------------------------------------------------------------------------------------
# registry


def registry_with(*names: str, **metadata: Any) -> Registry:
    registry = Registry("model", "blitz list models")
    for name in names:
        registry.add(Entry(name, make_model, f"about {name}", "testplugin", dict(metadata)))
    return registry


def test_list_uses_fnmatch_and_natural_order() -> None:
    registry = registry_with("resnet101", "vit_tiny", "resnet18", "ResNet9", "resnet2")
    assert registry.names() == ["resnet2", "ResNet9", "resnet18", "resnet101", "vit_tiny"]
    assert registry.names("resnet*") == ["resnet2", "resnet18", "resnet101"]
    assert registry.names("*t1*") == ["resnet18", "resnet101"]
    assert registry.names("nothing*") == []
    assert [e.name for e in registry.entries("vit*")] == ["vit_tiny"]
    assert len(registry) == 5 and list(registry) == registry.names()


def test_unknown_name_suggests_the_closest_and_the_list_command() -> None:
    registry = registry_with("resnet18", "resnet50", "lenet")
    with pytest.raises(UnknownNameError) as info:
        registry.get("resnet19")
    error = info.value
    assert isinstance(error, KeyError) and isinstance(error, UsageError)
    assert error.exit_code == 2
    assert str(error) == "Unknown model 'resnet19'. Did you mean 'resnet18'? See 'blitz list models'."
    assert error.known == ["lenet", "resnet18", "resnet50"]
    assert "resnet19" not in registry and "lenet" in registry and 3 not in registry


def test_unknown_start_of_several_names_suggests_them_all() -> None:
    registry = registry_with("resnet18", "resnet101", "resnet50", "lenet", "timm/*")
    with pytest.raises(UnknownNameError) as info:
        registry.get("resnet")
    assert str(info.value) == ("Unknown model 'resnet'. Did you mean one of 'resnet18', 'resnet50', 'resnet101'? "
                               "See 'blitz list models'.")
    with pytest.raises(UnknownNameError) as info:  # the start of one name: that name, as before
        registry.get("len")
    assert "Did you mean 'lenet'?" in str(info.value)
    with pytest.raises(UnknownNameError) as info:  # a short start of one long name, too far for a spelling match
        registry_with("vit_tiny_patch16_224", "lenet").get("vit")
    assert "Did you mean 'vit_tiny_patch16_224'?" in str(info.value)
    with pytest.raises(UnknownNameError) as info:  # one letter starts too much to be a hint
        registry.get("r")
    assert "Did you mean" not in str(info.value)
    cifar = registry_with("cifar10", "cifar100", "mnist")
    with pytest.raises(UnknownNameError) as info:  # a synonym (of cifar10) that starts two names: both
        cifar.get("cifar")
    assert "Did you mean one of 'cifar10', 'cifar100'?" in str(info.value)
    with pytest.raises(UnknownNameError) as info:  # a synonym that starts none: its name alone
        registry_with("cifar10", "mnist").get("cifar")
    assert "Did you mean 'cifar10'?" in str(info.value)


def test_unknown_start_of_many_names_shows_a_few_and_how_to_list_them() -> None:
    registry = registry_with(*(f"net{i}" for i in range(1, 8)))
    with pytest.raises(UnknownNameError) as info:
        registry.get("net")
    assert str(info.value) == ("Unknown model 'net'. Did you mean one of 'net1', 'net2', 'net3', 'net4', 'net5', ...? "
                               "See 'blitz list models net'.")


def test_unknown_name_without_a_close_match_has_no_suggestion() -> None:
    with pytest.raises(UnknownNameError) as info:
        registry_with("lenet").get("zzzzzz")
    assert "Did you mean" not in str(info.value)
    assert "See 'blitz list models'." in str(info.value)


def test_family_resolves_variants_and_validates_them() -> None:
    known = {"resnet18", "vit_tiny"}
    registry = Registry("model", "blitz list models")
    registry.add(Entry("timm/*", make_model, "any timm model", "timm", {
        "validate_variant": known.__contains__, "list_variants": lambda: sorted(known),
    }))
    entry = registry.get("timm/resnet18")
    assert (entry.name, entry.variant, entry.plugin, entry.factory) == ("timm/resnet18", "resnet18", "timm", make_model)
    assert entry.description == "any timm model"
    assert "timm/vit_tiny" in registry
    with pytest.raises(UnknownNameError) as info:
        registry.get("timm/resnet81")
    assert "Did you mean 'timm/resnet18'?" in str(info.value)
    with pytest.raises(UnknownNameError) as info:  # 'timm/' shared is no likeness: 'vit_tiny' is not close
        registry.get("timm/notamodel")
    assert "Did you mean" not in str(info.value)
    assert "timm/" not in registry  # an empty variant is not a name
    assert registry.names() == ["timm/*"]


def test_family_without_validator_takes_any_variant() -> None:
    registry = registry_with("fam/*", "fam")
    assert registry.get("fam/anything").variant == "anything"
    assert registry.get("fam").variant is None  # a plain name next to a family of the same prefix
    with pytest.raises(UnknownNameError):
        registry.get("other/anything")


@pytest.mark.parametrize("bad", ["", "has space", "-leading", "a/b", "a/*/*", "ünïcode"])
def test_invalid_names_are_rejected(bad: str) -> None:
    with pytest.raises(PluginError, match="invalid model name"):
        registry_with(bad)


@pytest.mark.parametrize("bad", [[0.1], {"lr": "0.1"}, {"lr": True}, {"beta2": 0.99}])
def test_optimizer_hyperparameters_that_are_not_numbers_for_known_keys_are_rejected(bad) -> None:
    registry = Registry("optimizer", "blitz list optimizers")
    with pytest.raises(PluginError, match=r"registered optimizer 'x' with hyperparameters .*: give a dict of numbers"):
        registry.add(Entry("x", lambda: None, plugin="p", metadata={"hyperparameters": bad}))
    registry.add(Entry("x", lambda: None, plugin="p", metadata={"hyperparameters": {"lr": 0.1, "weight_decay": 0}}))


def test_hyperparameters_of_other_kinds_are_the_plugins_own() -> None:
    """blitz reads hyperparameters= for optimizers only: a model's was refused as a bad optimizer's."""
    registry = Registry("model", "blitz list models")
    registry.add(Entry("x", lambda: None, plugin="p", metadata={"hyperparameters": {"depth": 3}}))
    assert registry.get("x").metadata["hyperparameters"] == {"depth": 3}


def test_non_callable_factory_is_rejected() -> None:
    registry = Registry("model", "blitz list models")
    with pytest.raises(PluginError, match="not callable"):
        registry.add(Entry("x", "not a function", plugin="p"))  # type: ignore[arg-type]


def test_duplicate_name_is_rejected_and_first_is_kept() -> None:
    registry = registry_with("lenet")
    with pytest.raises(PluginError, match="already registers; the first registration is kept"):
        registry.add(Entry("lenet", make_model, "second", "other"))
    assert registry.get("lenet").description == "about lenet"


# --------------------------------------------------------------------------------------------
# loading: failure isolation


def test_builtins_load_first_from_distribution_blitz() -> None:
    sources = discover()
    flags = [s.builtin for s in sources]
    assert flags == sorted(flags, reverse=True), "built-ins must come before third-party plugins"
    third_party = [s.name for s in sources if not s.builtin]
    assert third_party == sorted(third_party)
    host = PluginHost(builtins())
    for name in ("lenet", "random", "optimizers", "schedules", "strategy_cpu", "jsonl_logger"):
        record = host.records[name]
        assert record.distribution == "blitz-train" and record.builtin and record.loaded, record
    assert "lenet" in host.registries["models"]


def test_plugin_that_fails_to_import_is_recorded_and_others_load() -> None:
    host = PluginHost([
        failing_source("broken", ImportError("No module named 'missing_dependency'")),
        local_source(ModelsPlugin("good_model"), "good"),
    ])
    broken = host.records["broken"]
    assert not broken.loaded and broken.hooks == [] and broken.registers == {}
    assert len(broken.errors) == 1
    assert broken.errors[0].startswith("failed to load: ImportError: No module named 'missing_dependency'")
    assert (broken.distribution, broken.version, broken.module) == ("broken-dist", "9.9", "broken_module")
    assert host.records["good"].loaded and host.records["good"].errors == []
    assert host.registries["models"].names() == ["good_model"]


def test_plugin_with_a_bad_hook_signature_fails_to_load() -> None:
    class WrongArgument:
        @hookimpl
        def register_models(self, registry):  # the spec's argument is called "register"
            registry("never", make_model)

    host = host_with((WrongArgument(), "wrongarg"), (ModelsPlugin("fine"), "fine"))
    record = host.records["wrongarg"]
    assert not record.loaded
    assert record.errors and record.errors[0].startswith("failed to load:")
    assert "registry" in record.errors[0]
    assert host.registries["models"].names() == ["fine"]


def test_register_hook_that_raises_only_loses_its_own_plugin() -> None:
    class Raising:
        @hookimpl
        def register_models(self, register):
            register("made_before_the_error", make_model)
            raise RuntimeError("boom")

    host = host_with((ModelsPlugin("before"), "a"), (Raising(), "raising"), (ModelsPlugin("after"), "z"))
    record = host.records["raising"]
    assert len(record.errors) == 1
    assert record.errors[0].startswith("raised in register_models: RuntimeError: boom (test_plugins.py:")
    assert {"before", "after"} <= set(host.registries["models"].names())
    assert host.records["a"].errors == [] and host.records["z"].errors == []


def test_name_clash_keeps_the_first_and_reports_the_second() -> None:
    first_factory = make_model

    def second_factory(*, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        raise AssertionError("the second registration must not be used")

    host = host_with(
        (ModelsPlugin("shared", "only_first", factory=first_factory), "first"),
        (ModelsPlugin("shared", "only_second", factory=second_factory), "second"),
    )
    assert host.registries["models"].get("shared").factory is first_factory
    assert host.registries["models"].get("shared").plugin == "first"
    assert host.records["first"].errors == []
    assert host.records["first"].registers == {"models": ["shared", "only_first"]}
    second = host.records["second"]
    assert second.errors == [
        "Plugin 'second' registers model 'shared', which plugin 'first' already registers; "
        "the first registration is kept: register yours under another name."
    ]
    assert second.registers == {"models": ["only_second"]}  # its other names still register
    assert second.loaded


def test_third_party_cannot_replace_a_builtin_name() -> None:
    host = host_with((ModelsPlugin("lenet"), "impostor"), with_builtins=True)
    assert host.registries["models"].get("lenet").plugin == "lenet"
    assert any("which plugin 'lenet' already registers" in e for e in host.records["impostor"].errors)


def test_unknown_hook_is_an_error_and_the_plugin_is_not_loaded() -> None:
    class Misspelt:
        @hookimpl
        def register_model(self, register):  # should be register_models
            register("never_registered", make_model)

        @hookimpl
        def register_datasets(self, register):
            register("also_never", make_model)

    host = host_with((Misspelt(), "misspelt"), (ModelsPlugin("fine"), "fine"))
    record = host.records["misspelt"]
    assert not record.loaded
    assert record.errors == [
        "implements unknown hook 'register_model' (a misspelling of 'register_models'?); the plugin was not loaded"
    ]
    assert "never_registered" not in host.registries["models"]
    assert "also_never" not in host.registries["datasets"]  # its valid hooks are dropped too
    assert host.pm.get_plugin("misspelt") is None
    assert host.registries["models"].names() == ["fine"]


def test_an_unknown_hook_like_no_hook_suggests_none() -> None:
    class Odd:
        @hookimpl
        def configure_everything(self):
            pass

    record = host_with((Odd(), "odd")).records["odd"]
    assert record.errors == ["implements unknown hook 'configure_everything' (a misspelling?); the plugin was not loaded"]


def test_same_plugin_name_twice_does_not_crash() -> None:
    host = PluginHost([local_source(ModelsPlugin("one"), "dup"), local_source(ModelsPlugin("two"), "dup")])
    assert "one" in host.registries["models"] and "two" not in host.registries["models"]
    assert host.records["dup"].registers == {"models": ["one"]}  # credited to the plugin that loaded
    assert host.records["dup"].errors == []
    second = [r for key, r in host.records.items() if key != "dup"]
    assert [(r.name, r.loaded) for r in second] == [("dup", False)]
    assert "plugin names must be unique" in second[0].errors[0]


# --------------------------------------------------------------------------------------------
# BLITZ_LOAD_PLUGINS


def third_party_sources() -> list[PluginSource]:
    """Two fake third-party plugins that come through sources like installed ones do."""
    return [
        PluginSource("alpha", lambda: ModelsPlugin("alpha_model"), "alpha_mod", "alpha-dist", "1.0"),
        PluginSource("beta", lambda: ModelsPlugin("beta_model"), "beta_mod", "beta-dist", "1.0"),
    ]


@pytest.mark.parametrize(
    ("value", "loaded"),
    [(None, {"alpha", "beta"}), ("", set()), ("beta", {"beta"}), (" alpha , beta ,", {"alpha", "beta"}), ("gamma", set())],
)
def test_load_plugins_env_limits_third_party_plugins(
    monkeypatch: pytest.MonkeyPatch, value: str | None, loaded: set[str]
) -> None:
    if value is not None:
        monkeypatch.setenv(LOAD_PLUGINS_ENV, value)
    host = PluginHost([*builtins(), *third_party_sources()])
    for name in ("alpha", "beta"):
        record = host.records[name]
        assert record.loaded == (name in loaded)
        assert (f"{name}_model" in host.registries["models"]) == (name in loaded)
        assert record.skipped == (None if name in loaded else f"not in {LOAD_PLUGINS_ENV}")
    assert host.records["lenet"].loaded and "lenet" in host.registries["models"]  # built-ins always load


def test_a_name_left_out_or_misspelt_in_load_plugins_is_named_where_its_component_is_missing(monkeypatch):
    from blitz.catalog import resolve
    from blitz.errors import UnknownNameError

    monkeypatch.setenv(LOAD_PLUGINS_ENV, "alpa,Beta")  # a misspelling, and the wrong case
    host = PluginHost([*builtins(), *third_party_sources()])
    assert host.unmatched_allowed == ["Beta", "alpa"] and host.skipped() == ["alpha", "beta"]
    with pytest.raises(UnknownNameError) as info:
        resolve("models", "alpha_model", host=host)
    assert str(info.value) == (
        "Unknown model 'alpha_model'. (BLITZ_LOAD_PLUGINS leaves out plugin(s) 'alpha', 'beta' and names "
        "'Beta', 'alpa', which no plugin has.) See 'blitz list models'."
    )


def test_a_plugins_print_while_it_loads_goes_to_stderr_not_into_json_output(capsys):
    class Chatty(ModelsPlugin):
        @hookimpl
        def register_models(self, register):
            print("registering chatty models")
            super().register_models(register)

    def load():
        print("Hello from chatty!")
        return Chatty("chatty_model")

    kept = []

    def load_keeping_stdout():
        import sys

        kept.append(sys.stdout)  # `OUT = sys.stdout` in a module body: used later, in a run
        return load()

    host = PluginHost([*builtins(), PluginSource("chatty", load_keeping_stdout, "chatty_mod", "chatty-dist", "1.0")])
    assert "chatty_model" in host.registries["models"]
    captured = capsys.readouterr()
    assert captured.out == "" and "Hello from chatty!" in captured.err and "registering chatty models" in captured.err
    print("a metrics line", file=kept[0])  # after loading, what it kept writes to stdout again
    assert capsys.readouterr().out == "a metrics line\n"


@pytest.mark.parametrize(
    ("call", "got"),
    [(lambda register, f: register(f, description="x"), "got function and nothing"),
     (lambda register, f: register(f, "swapped"), "got function and 'swapped'")],
)
def test_register_called_without_a_name_says_how_to_call_it(call, got):
    def factory(**_):
        return nn.Linear(1, 1)

    plugin = SimpleNamespace(__name__="noname", register_models=hookimpl(lambda register: call(register, factory)))
    host = PluginHost([*builtins(), local_source(plugin, "noname")])
    (error,) = host.records["noname"].errors
    assert error.startswith(
        "raised in register_models: TypeError: register() takes a name and a factory, "
        f"register('name', factory, description=...); {got}"
    )


# --------------------------------------------------------------------------------------------
# each register_* hook: what it registers, called as documented; the end-to-end test below
# runs all of them through the real Trainer


def load_pixels(*, root: Path | None, download: bool, length: int = 20, classes: int = 2) -> DataBundle:
    images = torch.arange(length * 3 * 8 * 8, dtype=torch.int64).remainder(256).to(torch.uint8).view(length, 3, 8, 8)
    split = TensorSplit(images, torch.arange(length) % classes)
    info = DataInfo(classes, (3, 8, 8), tuple(f"c{i}" for i in range(classes)), (0.5,) * 3, (0.25,) * 3)
    return DataBundle(train=split, test=split, info=info)


class EveryKind:
    """One plugin implementing every register_* hook. ``loggers`` keeps the loggers it made."""

    def __init__(self) -> None:
        self.loggers: list[Any] = []

    @hookimpl
    def register_datasets(self, register):
        register("pixels", load_pixels, description="deterministic pixels")

    @hookimpl
    def register_models(self, register):
        register("flat", make_model, description="flatten + linear", paper="none")

    @hookimpl
    def register_optimizers(self, register):
        def build(model: nn.Module, *, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
            return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

        register("plain_sgd", build, description="SGD")

    @hookimpl
    def register_schedules(self, register):
        def build(optimizer: torch.optim.Optimizer, *, total_steps: int, floor: float = 0.5) -> Any:
            return torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, floor, total_iters=total_steps)

        register("halving", build, description="linear to half")

    @hookimpl
    def register_strategies(self, register):
        class Here(Strategy):
            name = "here"

        register("here", lambda *, device=None: Here(device or "cpu"), description="cpu, by another name")

    @hookimpl
    def register_loggers(self, register):
        class ListLogger:
            def __init__(self, run_dir: Path) -> None:
                self.run_dir, self.records, self.closed = run_dir, [], False

            def log(self, record: dict[str, Any]) -> None:
                self.records.append(record)

            def close(self) -> None:
                self.closed = True

        def build(*, run_dir: Path) -> ListLogger:
            self.loggers.append(ListLogger(run_dir))
            return self.loggers[-1]

        register("memory", build, description="keeps records in memory")


@pytest.fixture(scope="module")
def every_kind_host() -> PluginHost:
    return host_with((EveryKind(), "every"))


def test_every_kind_plugin_records_what_it_registers(every_kind_host: PluginHost) -> None:
    record = every_kind_host.records["every"]
    assert record.loaded and record.errors == []
    assert record.hooks == sorted(f"register_{k}" for k in
                                  ("datasets", "models", "optimizers", "schedules", "strategies", "loggers"))
    assert record.registers == {
        "datasets": ["pixels"], "models": ["flat"], "optimizers": ["plain_sgd"],
        "schedules": ["halving"], "strategies": ["here"], "loggers": ["memory"],
    }


def test_hook_register_datasets(every_kind_host: PluginHost) -> None:
    entry = every_kind_host.registries["datasets"].get("pixels")
    assert (entry.plugin, entry.description) == ("every", "deterministic pixels")
    bundle = entry.factory(root=None, download=False, length=6, classes=3)
    assert isinstance(bundle, DataBundle) and len(bundle.train) == 6
    assert bundle.info.class_names == ("c0", "c1", "c2")


def test_hook_register_models(every_kind_host: PluginHost) -> None:
    entry = every_kind_host.registries["models"].get("flat")
    assert entry.metadata == {"paper": "none"}  # extra register() keywords become metadata
    model = entry.factory(num_classes=4, input_shape=(3, 8, 8))
    out = model(torch.zeros(2, 3, 8, 8))
    out.sum().backward()
    assert out.shape == (2, 4)


def test_hook_register_optimizers(every_kind_host: PluginHost) -> None:
    model = make_model(num_classes=2, input_shape=(4,))
    optimizer = every_kind_host.registries["optimizers"].get("plain_sgd").factory(model, lr=0.5, momentum=0.0, weight_decay=0.0)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["lr"] == 0.5


def test_hook_register_schedules(every_kind_host: PluginHost) -> None:
    model = make_model(num_classes=2, input_shape=(4,))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = every_kind_host.registries["schedules"].get("halving").factory(optimizer, total_steps=4)
    for _ in range(4):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)


def test_hook_register_strategies(every_kind_host: PluginHost) -> None:
    strategy = every_kind_host.registries["strategies"].get("here").factory(device=None)
    assert isinstance(strategy, Strategy) and strategy.describe() == "here on cpu"
    assert strategy.is_main and strategy.world_size == 1


def test_hook_register_loggers(every_kind_host: PluginHost, tmp_path: Path) -> None:
    logger = every_kind_host.registries["loggers"].get("memory").factory(run_dir=tmp_path)
    logger.log({"event": "epoch", "epoch": 1})
    logger.close()
    assert logger.records == [{"event": "epoch", "epoch": 1}] and logger.closed


class Recipes:
    """A plugin that ships recipes, some of them wrong."""

    @hookimpl
    def register_recipes(self, register):
        register("quick_flat", description="linear on random data, 1 epoch", measured="not measured",
                 model="linear", dataset="random", epochs=1, batch_size=20,
                 dataset_args={"length": 40, "test_length": 20, "shape": [6]})
        register("typo", description="x", epochz=3)
        register("tutorial", description="the catalog has one", epochs=1)
        register("nodescription", epochs=1)
        register("quick_flat", description="again", epochs=2)


def test_hook_register_recipes(tmp_path: Path, isolated_runs: Path) -> None:
    from blitz.catalog import load_catalog
    from blitz.resolve import resolve_config

    host = host_with((Recipes(), "recipes_plugin"), with_builtins=True)
    reset_host(host)
    try:
        record = host.records["recipes_plugin"]
        assert record.registers == {"recipes": ["quick_flat"]}
        assert record.errors == [
            "Plugin 'recipes_plugin' registered recipe 'typo' with 'epochz', which is not a config key (did you mean 'epochs'?).",
            "Plugin 'recipes_plugin' registered recipe 'nodescription' without a description (description='...').",
            "Plugin 'recipes_plugin' registers recipe 'quick_flat' twice; the first registration is kept.",
            "Plugin 'recipes_plugin' registers recipe 'tutorial', a name registry.toml gives a recipe of its own; "
            "the catalog's is kept: "
            "register another name",
        ]
        catalog = load_catalog()
        assert catalog.recipes["tutorial"].description != "the catalog has one"  # the catalog's, kept
        assert load_catalog(plugin_recipes=False).recipes.keys() == catalog.recipes.keys() - {"quick_flat"}
        resolved = resolve_config(recipe="quick_flat")
        config = resolved.config
        assert (config.model, config.dataset, config.epochs, config.recipe) == ("linear", "random", 1, "quick_flat")
        assert resolved.provenance["epochs"] == "recipe quick_flat (plugin recipes_plugin)"  # --print-config shows it
        listed = json.loads(CliRunner().invoke(app, ["list", "recipes", "quick", "--json"]).output)
        assert listed == [{"name": "quick_flat", "description": "linear on random data, 1 epoch (plugin recipes_plugin)",
                           "measured": "not measured", "plugin": "recipes_plugin"}]
        result = CliRunner().invoke(app, ["run", "--recipe", "quick_flat", "--out", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
    finally:
        reset_host()


def test_every_kind_trains_end_to_end(tmp_path: Path) -> None:
    """The components of one third-party plugin, used together by the real Trainer."""
    plugin = EveryKind()
    host = host_with((plugin, "every"), with_builtins=True)
    config = tiny_config(
        tmp_path, model="flat", dataset="pixels", optimizer="plain_sgd", schedule="halving",
        strategy="here", loggers=["memory"], epochs=2, batch_size=4, lr=0.01,
        dataset_args={"length": 12}, schedule_args={"floor": 0.25},
    )
    result = Trainer(config, host=host, console=quiet()).fit()
    assert len(result.history) == 2 and result.final.count == 12
    assert result.history[-1]["lr"] == pytest.approx(0.01 * 0.25)
    (logger,) = plugin.loggers  # one logger, given the run folder, fed every record, closed
    assert logger.run_dir == result.run_dir and logger.closed
    epochs = [r for r in logger.records if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert [r["test_accuracy"] for r in epochs] == [h["test_accuracy"] for h in result.history]
    assert any(r["event"] == "step" for r in logger.records)


def test_wrong_factory_argument_is_a_usage_error(tmp_path: Path) -> None:
    host = host_with((EveryKind(), "every"), with_builtins=True)
    config = tiny_config(tmp_path, model="flat", dataset="pixels", strategy="here",
                         dataset_args={"length": 12}, model_args={"depth": 3})
    with pytest.raises(UsageError, match=r"Model 'flat' takes no argument 'depth'; it takes no options\.$"):
        Trainer(config, host=host, console=quiet()).fit()


# --------------------------------------------------------------------------------------------
# lifecycle hooks, through a real (tiny) training run


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recorder, Any, str]:
    recorder = Recorder()
    host = host_with((recorder, "recorder"), with_builtins=True)
    console = quiet()
    config = tiny_config(tmp_path_factory.mktemp("lifecycle"), epochs=2)
    result = Trainer(config, host=host, console=console).fit()
    return recorder, result, console.file.getvalue()  # type: ignore[attr-defined]


def test_lifecycle_hooks_are_called_in_order(recorded_run: tuple[Recorder, Any, str]) -> None:
    recorder, _, output = recorded_run
    assert recorder.names() == ["on_train_start", "on_epoch_end", "on_epoch_end", "on_train_end"]
    assert "Warning" not in output
    runs = {id(kwargs["run"]) for _, kwargs in recorder.calls}
    assert len(runs) == 1, "every hook sees the same TrainingRun"


def test_hook_on_train_start(recorded_run: tuple[Recorder, Any, str]) -> None:
    recorder, result, _ = recorded_run
    name, kwargs = recorder.calls[0]
    assert name == "on_train_start"
    assert isinstance(kwargs["model"], nn.Module)
    assert kwargs["run_dir"] == result.run_dir and result.run_dir.is_dir()
    run = kwargs["run"]
    assert run.config.model == "lenet" and run.info.num_classes == 10


def test_hook_on_epoch_end(recorded_run: tuple[Recorder, Any, str]) -> None:
    recorder, result, _ = recorded_run
    epochs = [kwargs for name, kwargs in recorder.calls if name == "on_epoch_end"]
    assert [k["epoch"] for k in epochs] == [1, 2]
    for kwargs, history in zip(epochs, result.history):
        metrics = kwargs["metrics"]
        assert {"train_loss", "test_loss", "test_accuracy", "images_per_s", "lr", "seconds"} <= set(metrics)
        assert metrics["test_accuracy"] == history["test_accuracy"]
        assert 0.0 <= metrics["test_accuracy"] <= 1.0


def test_hook_on_train_end(recorded_run: tuple[Recorder, Any, str]) -> None:
    recorder, result, _ = recorded_run
    name, kwargs = recorder.calls[-1]
    assert name == "on_train_end"
    metrics = kwargs["metrics"]
    assert metrics["test_accuracy"] == result.final.accuracy
    assert set(metrics["per_class_accuracy"]) == {f"class{i}" for i in range(10)}


def test_lifecycle_hook_that_raises_warns_once_and_is_skipped(tmp_path: Path) -> None:
    class Flaky:
        calls = 0

        @hookimpl
        def on_epoch_end(self, run, epoch, metrics):
            Flaky.calls += 1
            raise ValueError("flaky plugin")

    recorder = Recorder()
    host = host_with((Flaky(), "flaky"), (recorder, "recorder"), with_builtins=True)
    console = quiet()
    result = Trainer(tiny_config(tmp_path, epochs=3), host=host, console=console).fit()
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert Flaky.calls == 1
    assert output.count("Warning:") == 1
    assert "plugin 'flaky' (from local) raised in on_epoch_end: ValueError: flaky plugin" in output
    assert "skipped for the rest of this run" in output
    assert recorder.names().count("on_epoch_end") == 3  # the other plugins go on
    assert len(result.history) == 3


def test_call_lifecycle_disables_only_the_hook_that_raised() -> None:
    class HalfBroken:
        ended = 0

        @hookimpl
        def on_train_start(self, run):
            raise RuntimeError("start failed")

        @hookimpl
        def on_train_end(self, run, metrics):
            HalfBroken.ended += 1

    host = host_with((HalfBroken(), "half"))
    run = SimpleNamespace(run_dir=None)
    first = host.call_lifecycle("on_train_start", run=run)
    assert len(first) == 1 and "plugin 'half' (from local) raised in on_train_start: RuntimeError: start failed" in first[0]
    assert host.call_lifecycle("on_train_start", run=run) == []
    assert host.call_lifecycle("on_train_end", run=run, metrics={}) == []
    assert HalfBroken.ended == 1


def test_lifecycle_hook_may_take_a_subset_of_the_arguments() -> None:
    """pluggy lets an implementation declare only the arguments it uses."""
    seen: list[int] = []

    class EpochOnly:
        @hookimpl
        def on_epoch_end(self, epoch):
            seen.append(epoch)

    host = host_with((EpochOnly(), "epoch_only"))
    assert host.call_lifecycle("on_epoch_end", run=None, epoch=3, metrics={}) == []
    assert seen == [3]


def test_module_plugin_works_like_an_object_plugin() -> None:
    module = ModuleType("my_blitz_plugin")

    @hookimpl
    def register_models(register):
        register("from_module", make_model)

    module.register_models = register_models  # type: ignore[attr-defined]
    host = host_with((module, "modplugin"))
    assert host.records["modplugin"].module == "my_blitz_plugin"
    assert host.registries["models"].get("from_module").plugin == "modplugin"


# --------------------------------------------------------------------------------------------
# the CLI's view


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_list_plugins_json_shows_builtins_and_what_they_register(installed_host: Any) -> None:
    installed_host(PluginHost(builtins()))
    result = cli("list-plugins", "--json")
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in json.loads(result.stdout)}
    lenet = records["lenet"]
    assert lenet["distribution"] == "blitz-train" and lenet["builtin"] and lenet["loaded"]
    assert lenet["registers"] == {"models": ["lenet"]} and lenet["hooks"] == ["register_models"]
    assert records["random"]["registers"] == {"datasets": ["random"]}
    assert "sgd" in records["optimizers"]["registers"]["optimizers"]
    assert records["jsonl_logger"]["registers"] == {"loggers": ["jsonl"]}
    assert set(lenet) >= {"module", "version", "errors", "skipped"}


def test_cli_keeps_working_with_a_broken_plugin(installed_host: Any) -> None:
    installed_host(PluginHost([
        *builtins(),
        failing_source("broken", ModuleNotFoundError("No module named 'nothere'")),
        local_source(ModelsPlugin("lenet", "extra_model"), "clasher"),
    ]))
    result = cli("list-plugins", "--json")
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert records["broken"]["loaded"] is False
    assert len(records["broken"]["errors"]) == 1
    assert records["broken"]["errors"][0].startswith("failed to load: ModuleNotFoundError: No module named 'nothere'")
    assert records["clasher"]["registers"] == {"models": ["extra_model"]}
    assert "plugin 'lenet' already registers" in records["clasher"]["errors"][0]

    table = cli("list-plugins")
    assert table.exit_code == 0 and "broken" in table.stdout

    models = cli("list", "models", "--json")
    assert models.exit_code == 0
    rows = {r["name"]: r["plugin"] for r in json.loads(models.stdout)}
    assert rows["lenet"] == "lenet" and rows["extra_model"] == "clasher"


def test_cli_list_filters_by_pattern(installed_host: Any) -> None:
    installed_host(host_with((ModelsPlugin("cnn2", "cnn10", "mlp"), "mine"), with_builtins=True))
    result = cli("list", "models", "cnn*", "--json")
    assert result.exit_code == 0
    assert [r["name"] for r in json.loads(result.stdout)] == ["cnn2", "cnn10"]


def test_cli_unknown_name_exits_2_with_suggestion(installed_host: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed_host(PluginHost(builtins()))
    monkeypatch.setenv("BLITZ_RUNS_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["run", "--model", "lenett", "--dataset", "random"])
    assert result.exit_code == 2
    assert "Unknown model 'lenett'. Did you mean 'lenet'?" in result.stderr
    assert "blitz list models" in result.stderr
