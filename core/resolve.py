"""From what the user typed to one validated RunConfig, with every name checked up front.

Layers, lowest first: defaults, the recipe, the config file, CLI flags. A ``recipe`` key in a
config file selects a recipe too (a CLI --recipe wins). Names are checked against the plugin
registries here, before any data is read or any weight is built.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blitz.catalog import Catalog, load_catalog, recipe_plugin, resolve
from blitz.config import Layer, RunConfig, merge_layers, read_toml, unused_logger_options, validate
from blitz.errors import ConfigError, UnknownNameError, UsageError
from blitz.kinds import NAME_FIELDS, OPTIONS_OF
from blitz.plugin_host import get_host, plugin_states
from blitz.registry import OPTIMIZER_HYPERPARAMETERS
from blitz.runs import find_run, lock_run, plugins_not_loaded, release_run, rerun_command


@dataclass
class CLIOverrides:
    values: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    dataset_args: dict[str, Any] = field(default_factory=dict)
    optimizer_args: dict[str, Any] = field(default_factory=dict)
    schedule_args: dict[str, Any] = field(default_factory=dict)
    logger_args: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_values(self) -> dict[str, Any]:
        values = dict(self.values)
        for key in ("augment", "model_args", "dataset_args", "optimizer_args", "schedule_args", "logger_args"):
            if getattr(self, key):
                values[key] = getattr(self, key)
        return values


@dataclass
class ResolvedConfig:
    config: RunConfig
    provenance: dict[str, str]
    resume_checkpoint: Path | None = None


# The flags behind config keys whose names differ from them (the rest: --key-with-dashes).
_FLAGS = {"augment": "--flip/--flip-mode/--translate/--cutout", "model_args": "--model-arg",
          "dataset_args": "--dataset-arg", "optimizer_args": "--optimizer-arg", "schedule_args": "--schedule-arg",
          "logger_args": "--logger-arg"}


def _as_flag(key: str) -> str:
    """A config key as the user typed it on the command line: 'limit_steps' -> '--limit-steps'."""
    return _FLAGS.get(key, "--" + key.replace("_", "-"))


def resolve_config(
    *,
    recipe: str | None = None,
    config_file: Path | None = None,
    overrides: CLIOverrides | None = None,
    resume: str | None = None,
) -> ResolvedConfig:
    overrides = overrides or CLIOverrides()
    catalog = load_catalog()
    layers: list[Layer] = []
    resume_checkpoint = None

    if resume is not None:
        if recipe or config_file:
            raise UsageError("--resume continues a run with its saved config; drop --recipe/--config.")
        run_dir = find_run(resume)
        resume_checkpoint = run_dir / "checkpoints" / "last.ckpt"
        if not resume_checkpoint.is_file():
            # a run in its first epoch has none yet: say that it is running, not to start again
            with contextlib.suppress(OSError):  # a read-only folder: no lock to test
                release_run(lock_run(run_dir))
            raise UsageError(
                f"The run '{run_dir}' has no checkpoint to resume from ({resume_checkpoint} is missing: it stopped "
                f"before its first); train it again: {rerun_command(run_dir)}"
            )
        layers.append(Layer(f"run {run_dir}", read_toml(run_dir / "config.toml", "run config")))
        allowed = {"epochs": "--epochs", "strategy": "--strategy", "device": "--device", "log_every": "--log-every",
                   "data_root": "--data-root", "loggers": "--logger"}
        changed = sorted(set(overrides.as_values()) - set(allowed))
        if changed:
            raise UsageError(
                f"--resume keeps the run's settings; {_as_flag(changed[0])} cannot change (only "
                f"{', '.join(sorted(allowed.values()))} can)."
            )
    else:
        file_values = read_toml(config_file) if config_file is not None else {}
        recipe_name = recipe or file_values.get("recipe")
        if recipe_name is not None:
            if not isinstance(recipe_name, str):
                raise ConfigError(f"'recipe' in '{config_file}' must be a string.")
            try:
                values = catalog.recipe_values(recipe_name)
            except UnknownNameError as exc:
                host = get_host()  # a plugin's recipe: its plugin may have failed, or been left out
                exc.note_plugins(host.failed(), host.skipped(), host.unmatched_allowed)
                if not recipe:  # from the config file, not the command line: say so, as check_names does
                    exc.came_from(f"config {config_file}")
                raise
            values["recipe"] = recipe_name
            plugin = recipe_plugin(recipe_name)  # --print-config says whose recipe it is
            layers.append(Layer(f"recipe {recipe_name}" + (f" (plugin {plugin})" if plugin else ""), values))
        if config_file is not None:
            file_values = {k: v for k, v in file_values.items() if k != "recipe"}
            layers.append(Layer(f"config {config_file}", file_values))
    layers.append(Layer("command line", overrides.as_values()))

    def canonical(field: str, name: Any) -> Any:
        """The registered name a catalog alias stands for (names that are not aliases: as given)."""
        kind = NAME_FIELDS.get(field)
        entry = catalog.entries(kind).get(name) if kind and isinstance(name, str) else None
        return (entry.component or name) if entry is not None else name

    values, provenance = merge_layers(layers, canonical)
    fill_optimizer_hyperparameters(values, provenance, catalog, layers, canonical)
    fill_catalog_defaults(values, provenance, catalog)
    config = validate(values, provenance)
    unused = unused_logger_options(config, provenance)
    if unused:
        raise ConfigError(f"{unused}.")
    try:
        check_names(config, provenance)
    except UnknownNameError as exc:
        if resume_checkpoint is not None:  # the run's own name: a plugin it had may be missing
            exc.add_hint(plugins_not_loaded(resume_checkpoint.parent.parent, plugin_states()))
        raise
    check_needed_options(config, provenance)
    return ResolvedConfig(config, provenance, resume_checkpoint)


def unused_data_root(config: RunConfig, provenance: dict[str, str]) -> str | None:
    """A warning where --data-root is given for a data source registered with
    ``reads_data_root=False`` (it makes its data), else None. Only the flag's: a folder from a
    config file or $BLITZ_DATA_ROOT is a default for every run (a run's saved config.toml holds
    one), not a request to read it."""
    if provenance.get("data_root") != "command line":
        return None
    if resolve("datasets", config.dataset).entry.metadata.get("reads_data_root", True):
        return None
    return f"--data-root is not used by dataset '{config.dataset}' (it reads no files): drop --data-root."


def warn_unused_data_root(config: RunConfig, *, given: bool) -> None:
    """:func:`unused_data_root`'s warning, for commands whose ``--data-root`` is the only source
    of the folder (``blitz eval``, ``blitz data verify``): ``given`` is whether it was given."""
    unused = unused_data_root(config, {"data_root": "command line"}) if given else None
    if unused:
        warnings.warn(unused, stacklevel=2)


def fill_catalog_defaults(values: dict[str, Any], provenance: dict[str, str], catalog: Catalog) -> None:
    """A registry.toml entry's ``defaults`` (``vit_tiny``: ``patch_size = 4``) as the run's own
    options, where no layer set them: ``--print-config`` shows them, and the run's config.toml
    keeps them, so that a resumed or rerun run builds the same model after registry.toml changed."""
    for option, args_key in OPTIONS_OF.items():
        name = values.get(option, RunConfig.model_fields[option].default)
        entry = catalog.entries(NAME_FIELDS[option]).get(name) if isinstance(name, str) else None
        if entry is None or not entry.defaults:
            continue
        given = values.get(args_key, {})
        if not isinstance(given, dict):
            continue  # validate() reports a non-table
        values[args_key] = {**entry.defaults, **given}  # a new dict: the layers' own stay as they were
        for key in entry.defaults.keys() - given.keys():
            provenance[f"{args_key}.{key}"] = f"registry {NAME_FIELDS[option]}.{name}"


def check_needed_options(config: RunConfig, provenance: dict[str, str]) -> None:
    """An option given on the command line that another option switches off would be ignored in
    silence: refuse it. (From a recipe or config file such a value is only a default.)"""
    needs = (
        ("augment.flip_mode", "--flip-mode", config.augment.flip, "--flip"),
        ("compile_mode", "--compile-mode", config.compile, "--compile"),
    )
    for key, flag, on, needed in needs:
        if provenance.get(key) == "command line" and not on:
            raise UsageError(f"{flag} applies with {needed}, which this run does not use: add {needed}, or drop {flag}.")
    # Both asked for here: refused. One from a recipe or file is a default: the run says which it uses.
    if config.compile and config.cuda_graphs and provenance.get("compile") == provenance.get("cuda_graphs") == "command line":
        raise UsageError(
            "--cuda-graphs and --compile do not go together: --cuda-graphs captures the model as it is, "
            "--compile --compile-mode reduce-overhead captures the compiled one; use one of them."
        )


def fill_optimizer_hyperparameters(
    values: dict[str, Any], provenance: dict[str, str], catalog: Catalog, layers: list[Layer],
    canonical: Callable[[str, Any], Any],
) -> None:
    """The optimizer's own ``lr``, ``momentum`` and ``weight_decay``, where it registered them.

    An optimizer registered with ``hyperparameters={"lr": ...}`` brings its own values. They
    apply where no layer set the value, and over a value that a layer set together with another
    optimizer (so `blitz run --recipe tutorial --optimizer muon` does not hand Muon the
    tutorial's SGD rate). A value set for this optimizer, or set without naming an optimizer,
    stays.
    """
    name = values.get("optimizer", RunConfig.model_fields["optimizer"].default)
    if not isinstance(name, str):
        return
    try:
        entry = resolve("optimizers", name, catalog).entry
    except UnknownNameError:
        return  # check_names reports it, with where the name came from
    recommended = entry.metadata.get("hyperparameters") or {}
    set_for: dict[str, Any] = {}  # the optimizer each value's layer named (None: it named none)
    for layer in layers:
        for key in OPTIMIZER_HYPERPARAMETERS:
            if key in layer.values:
                set_for[key] = layer.values.get("optimizer")
    for key, value in recommended.items():  # keys checked when registered
        other = set_for.get(key)
        if key in values:
            replace = other is not None and canonical("optimizer", other) != canonical("optimizer", name)
        else:
            replace = value != RunConfig.model_fields[key].default  # equal: it stays "default"
        if replace:
            values[key] = value
            provenance[key] = f"optimizer {name}"


def check_names(config: RunConfig, provenance: dict[str, str]) -> None:
    """Every component name must resolve; the error says where the bad name came from."""
    catalog = load_catalog()
    for field_name, kind in NAME_FIELDS.items():
        try:
            resolve(kind, getattr(config, field_name), catalog)
        except UnknownNameError as exc:
            source = provenance.get(field_name)
            if source and source != "command line":
                exc.came_from(source)
            raise
    for name in config.loggers:
        try:
            resolve("loggers", name, catalog)
        except UnknownNameError as exc:
            source = provenance.get("loggers")
            if source and source != "command line":
                exc.came_from(source)
            raise
