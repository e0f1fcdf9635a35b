"""Building what a config names: resolving names, calling factories, checking they fit.

Every factory call goes through ``call_factory``, so that a wrong keyword or a factory's own
ValueError becomes one clear error naming the component, before any training starts.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from torch import nn

from blitz.batches import labels_out_of_range
from blitz.catalog import Resolved, load_catalog, resolve
from blitz import components as components_module
from blitz.components import DataBundle, DataInfo, TensorSplit
from blitz.config import DATA_ROOT_ENV, SUPPLIED_BY_BLITZ, RunConfig
from blitz.errors import BlitzError, DataError, DataNotFoundError, IncompatibleError, PluginError, UsageError, closest_name
from blitz.kinds import KINDS
from blitz.option_types import type_hints, type_problem
from blitz.plugin_host import PluginHost, get_host
from blitz.scoring import eval_mode


@dataclass
class Components:
    """The registry entries a config names, resolved once."""

    model: Resolved
    dataset: Resolved
    optimizer: Resolved
    schedule: Resolved
    strategy: Resolved
    loggers: list[Resolved]

    def by_kind(self) -> list[tuple[str, Resolved]]:
        """Each component with its registry kind (``models``...), the loggers last."""
        return [("models", self.model), ("datasets", self.dataset), ("optimizers", self.optimizer),
                ("schedules", self.schedule), ("strategies", self.strategy), *(("loggers", r) for r in self.loggers)]


def resolve_components(config: RunConfig, host: PluginHost | None = None) -> Components:
    """Resolve every name in ``config``; an unknown one raises UnknownNameError (exit 2)."""
    host = host or get_host()
    catalog = load_catalog(host=host)
    return Components(
        model=resolve("models", config.model, catalog, host),
        dataset=resolve("datasets", config.dataset, catalog, host),
        optimizer=resolve("optimizers", config.optimizer, catalog, host),
        schedule=resolve("schedules", config.schedule, catalog, host),
        strategy=resolve("strategies", config.strategy, catalog, host),
        loggers=[resolve("loggers", name, catalog, host) for name in config.loggers],
    )


def check_optimizer_covers(resolved: Resolved, optimizer: torch.optim.Optimizer, model: nn.Module) -> list[str]:
    """Warnings for an optimizer over none or some of the model's trainable parameters: built over
    something else, it trains nothing and reports a flat loss."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = sum(id(p) not in held for p in trainable)
    if not trainable or not missing:
        return []
    where = resolved.named("Optimizer")
    if missing == len(trainable):  # a warning: an optimizer may hold copies and write them back
        return [f"{where} holds none of the model's {len(trainable)} trainable parameter tensors: unless it copies "
                "its results into them, the model will not train (build it over model.parameters())."]
    return [f"{where} updates {len(trainable) - missing} of the model's {len(trainable)} trainable parameter "
            f"tensors; the other {missing} stay as they are (freeze them with requires_grad_(False) if meant)."]


def component_origins(components: Components) -> dict[str, dict[str, str]]:
    """What each of the run's components is and which plugin supplied it, for manifest.json."""
    origins, loggers = {}, 0
    for kind, r in components.by_kind():
        if kind == "loggers":
            loggers += 1
        key = f"logger {loggers}" if kind == "loggers" else KINDS[kind].noun  # "model", ..., "logger 1", "logger 2"
        origins[key] = {"name": r.name, "component": r.entry.name, "plugin": r.entry.plugin}
    return origins


def contested_components(components: Components, host: PluginHost) -> list[str]:
    """Warnings for the run's components whose name another plugin also registered, refused
    (the first registration wins): the user may have meant that plugin's."""
    warnings = []
    for kind, r in components.by_kind():
        registry = host.registries[kind]
        others = sorted({*registry.refused.get(r.name, []), *registry.refused.get(r.entry.name, [])})
        if others:
            warnings.append(
                f"{registry.kind} '{r.name}' comes from plugin '{r.entry.plugin}'; plugin(s) "
                f"{', '.join(repr(o) for o in others)} register(s) the name too, refused (the first registration "
                "wins; a catalog entry before any): see 'blitz list-plugins'."
            )
    return warnings


def factory_options(factory: Any, what: str, defaults: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The options a user can give a factory (``--model-arg KEY=VALUE``...): each keyword's type
    and default, as its signature declares them (``defaults``: a catalog entry's, over the
    signature's); ``"**"`` where it takes any keyword."""
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return {}
    hints = type_hints(factory)  # those that resolve: the names and defaults still tell a lot
    if what in ("Optimizer", "Schedule") and parameters and parameters[0].kind is not inspect.Parameter.KEYWORD_ONLY:
        parameters = parameters[1:]  # the model, or the optimizer, that blitz passes first
    supplied = supplied_by_blitz(what)
    named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    options: dict[str, dict[str, Any]] = {}
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            options["**"] = {"type": "any keyword, passed on"}
        elif parameter.kind in named and parameter.name not in supplied:
            option: dict[str, Any] = {}
            if parameter.name in hints:
                option["type"] = inspect.formatannotation(hints[parameter.name]).replace("typing.", "")
            default = (defaults or {}).get(parameter.name, parameter.default)
            if default is not inspect.Parameter.empty:
                option.update(_default_entry(default))
            options[parameter.name] = option
    for key, value in (defaults or {}).items():  # a catalog default for a keyword the factory passes on
        if key not in options:
            options[key] = _default_entry(value)
    return options


def option_default_problems(host: PluginHost | None = None) -> list[str]:
    """Factory options whose own default their type hint refuses (``width: int = "8"``): the
    component fails, or misbehaves, whenever it is used without the option (`blitz list-plugins
    --check`). A default of None is not one: it means unset, whatever the hint."""
    host = host or get_host()
    problems = []
    for registry in host.registries.values():
        supplied = supplied_by_blitz(registry.kind.capitalize())
        for entry in registry.entries():
            try:
                parameters = inspect.signature(entry.factory).parameters.values()
            except (TypeError, ValueError):
                continue
            for parameter in parameters:
                default = parameter.default
                if default is inspect.Parameter.empty or default is None or parameter.name in supplied:
                    continue
                problem = type_problem(entry.factory, {parameter.name: default})
                if problem is not None:
                    problems.append(
                        f"Plugin '{entry.plugin}' {registry.kind} '{entry.name}': option '{parameter.name}' defaults "
                        f"to {default!r}, not {problem[1]} as its type hint says: fix the default or the hint."
                    )
    return problems


# How blitz calls each kind's factories (stand-in values): what `blitz list-plugins --check` binds
# every factory's signature to, so that one that cannot take them fails CI, not a user's run.
_FACTORY_CALLS: dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]] = {
    "dataset": ("factory(*, root, download)", (), {"root": None, "download": False}),
    "model": ("factory(*, num_classes, input_shape)", (), {"num_classes": 10, "input_shape": (3, 32, 32)}),
    "optimizer": ("factory(model, *, lr, momentum, weight_decay)", (None,), {"lr": 0.001, "momentum": 0.9, "weight_decay": 0.0}),
    "schedule": ("factory(optimizer, *, total_steps)", (None,), {"total_steps": 1}),
    "strategy": ("factory(*, device)", (), {"device": None}),
    "logger": ("factory(*, run_dir)", (), {"run_dir": Path(".")}),
}


def factory_signature_problems(host: PluginHost | None = None) -> list[str]:
    """Factories whose signature cannot take what blitz passes to every factory of their kind (a
    misnamed or missing keyword, positional-only parameters): every run of them fails
    (`blitz list-plugins --check`)."""
    host = host or get_host()
    problems = []
    for registry in host.registries.values():
        call = _FACTORY_CALLS.get(registry.kind)
        if call is None:
            continue
        shown, args, kwargs = call
        for entry in registry.entries():
            try:
                signature = inspect.signature(entry.factory)
            except (TypeError, ValueError):  # a builtin without one: not checked
                continue
            family = {"variant": "x"} if entry.name.endswith("/*") else {}
            try:
                signature.bind_partial(*args, **kwargs, **family)
            except TypeError as exc:
                problems.append(
                    f"Plugin '{entry.plugin}' {registry.kind} '{entry.name}': its factory cannot be called as blitz calls "
                    f"every {registry.kind} factory, {shown}{' with variant' if family else ''} ({exc}): "
                    "see 'Factory contracts' in docs/plugins.md."
                )
            splits = signature.parameters.get("splits") if registry.kind == "dataset" else None
            if splits is not None and splits.default is inspect.Parameter.empty:  # blitz run passes none
                problems.append(
                    f"Plugin '{entry.plugin}' dataset '{entry.name}': its 'splits' parameter has no default, and only "
                    "'blitz eval' passes one: default it to (\"train\", \"test\")."
                )
    return problems


def _default_entry(value: Any) -> dict[str, Any]:
    """``{"default": value}`` where JSON holds it, else ``{"default_text": repr}`` as Python writes it."""
    if isinstance(value, (bool, int, float, str, type(None))):
        return {"default": value}
    try:
        return {"default_text": repr(value)}
    except Exception:  # a default whose repr raises must not break `blitz list`
        return {"default_text": f"<{type(value).__name__}>"}


_OPTION_FLAGS = {"Model": "--model-arg", "Dataset": "--dataset-arg", "Optimizer": "--optimizer-arg",
                 "Schedule": "--schedule-arg"}

# Keywords blitz itself passes to factories (from the data, flags or the run), not --*-arg options:
# left out of the "it takes: ..." list, which lists what a user can set.
_SUPPLIED_BY_BLITZ = {
    "Dataset": set(SUPPLIED_BY_BLITZ["dataset_args"]), "Model": set(SUPPLIED_BY_BLITZ["model_args"]),
    "Optimizer": set(SUPPLIED_BY_BLITZ["optimizer_args"]), "Schedule": set(SUPPLIED_BY_BLITZ["schedule_args"]),
    "Strategy": {"device"}, "Logger": {"run_dir"},
}


def supplied_by_blitz(what: str) -> set[str]:
    """The keywords blitz passes to every factory of a kind (``variant`` to families'), not options."""
    return {"variant", *_SUPPLIED_BY_BLITZ.get(what, ())}


def check_keywords(resolved: Resolved, what: str, kwargs: dict[str, Any], *, check_types: bool = True) -> None:
    """UsageError for a keyword the factory does not take (naming the ones it does), or, with
    ``check_types``, a value its type hints refuse; PluginError where it does not take one blitz
    passes to every factory of its kind."""
    try:
        signature = inspect.signature(resolved.entry.factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    ):
        accepted = set(signature.parameters)
        unknown = sorted(set(kwargs) - accepted)
        ours = [k for k in unknown if k in supplied_by_blitz(what)]
        if ours:
            raise PluginError(
                f"{resolved.named(what)} does not accept '{ours[0]}', "
                f"which blitz passes to every {what.lower()} factory: the factory's signature is wrong "
                "(see 'Factory contracts' in docs/plugins.md)."
            )
        if unknown:  # what it takes, as 'blitz list' shows it (keyword-only or not)
            options = sorted(n for n in factory_options(resolved.entry.factory, what) if n != "**")
            close = closest_name(unknown[0], options)
            raise UsageError(
                f"{what} '{resolved.name}' takes no argument '{unknown[0]}'"
                + (f" (did you mean '{close}'?)" if close else "")
                + (f"; it takes: {', '.join(options)}." if options else "; it takes no options.")
            )
    supplied = supplied_by_blitz(what)
    problem = type_problem(resolved.entry.factory, {k: v for k, v in kwargs.items() if k not in supplied}) if check_types else None
    if problem is not None:
        key, wanted = problem
        flag = f"--logger-arg {resolved.name}." if what == "Logger" else _OPTION_FLAGS.get(what, "option") + " "
        raise UsageError(f"{what} '{resolved.name}': {flag}{key} must be {wanted}, got {kwargs[key]!r}.")


def check_options(components: Components, config: RunConfig, *, loggers: bool = True) -> None:
    """The options a run gives each component (registry defaults, then --*-arg), checked against
    its factory's signature and type hints before anything is built: a misspelt option is said
    at once, not after minutes of loading data. ``loggers``: False where none will be built."""
    for name, resolved in components.by_kind():
        kind = KINDS[name]
        if kind.options:
            options = getattr(config, kind.options)
        elif name == "loggers" and loggers:  # each its own table of logger_args
            options = config.logger_args.get(resolved.name, {})
        else:  # a strategy takes no options
            continue
        check_keywords(resolved, kind.noun.capitalize(), {**resolved.defaults, **options})


def call_factory(resolved: Resolved, what: str, *args: Any, check_types: bool = True, **kwargs: Any) -> Any:
    """Call a component factory, turning a wrong keyword into a clear usage error; with
    ``check_types``, a value its type hints refuse too."""
    if resolved.entry.variant is not None:
        kwargs["variant"] = resolved.entry.variant
    check_keywords(resolved, what, kwargs, check_types=check_types)
    try:
        return resolved.entry.factory(*args, **kwargs)
    except TypeError as exc:
        if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
            # Raised by the call itself, before the factory's first line: its signature cannot
            # take what blitz passes (positional-only parameters, say), whatever the user gave.
            raise PluginError(
                f"{resolved.named(what)} cannot be called as blitz calls "
                f"{what.lower()} factories ({exc}): see 'Factory contracts' in docs/plugins.md."
            ) from exc
        raise
    except (ValueError, BlitzError):
        raise  # the callers say what these mean (a rejected option, missing data...)
    except (Exception, SystemExit) as exc:  # its own failure (a RuntimeError, an unreadable file, sys.exit()): one line
        raise PluginError(
            f"{resolved.named(what)} failed while being built "
            f"({type(exc).__name__}: {first_line(exc)}); --debug shows where."
        ) from exc


def takes_keyword(factory: Any, name: str) -> bool:
    """Whether ``factory`` names a parameter ``name`` (not only ``**kwargs``: those pass it on)."""
    try:
        parameter = inspect.signature(factory).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def first_line(exc: BaseException) -> str:
    """An exception's message on one line: a TypeError's first line (torch's signature dumps run
    to dozens), any other's lines joined (a validation error's field and reason come after its
    first line), cut at 300 characters."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = (lines[0] if lines else "") if isinstance(exc, TypeError) else "; ".join(lines)
    return text if len(text) <= 300 else text[:297] + "..."


def plugin_bug(resolved: Resolved, what: str, exc: BaseException) -> PluginError:
    """A factory that failed on its own, with no option from the user: the plugin's bug, not a usage error."""
    return PluginError(
        f"{resolved.named(what)} failed while being built "
        f"({type(exc).__name__}: {first_line(exc)}): a bug in the plugin, not in your command; --debug shows where."
    )


def unexpected_keyword(exc: TypeError) -> str | None:
    """The keyword a call refused (``f() got an unexpected keyword argument 'bais'``), if that was it."""
    found = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
    return found.group(1) if found else None


def user_could_cause(exc: TypeError, given: dict[str, Any]) -> bool:
    """Whether a TypeError from inside a factory may come from the options the user gave: not
    where none were given, nor where it refuses a keyword the user did not give or misses an
    argument (the factory's own call of something else is wrong: options have defaults)."""
    keyword = unexpected_keyword(exc)
    missing = re.search(r"missing \d+ required .*argument", str(exc)) is not None
    return bool(given) and not missing and (keyword is None or keyword in given)


def call_with_options(resolved: Resolved, what: str, *args: Any, given: dict[str, Any], **kwargs: Any) -> Any:
    """``call_factory`` for optimizers and schedules: a factory's rejection of a value is a usage
    error. ``given``: the options the user set (``--optimizer-arg``...); a TypeError from inside a
    factory given none of them is the plugin's bug (the lr, momentum and weight decay blitz
    always passes are validated numbers)."""
    try:
        return call_factory(resolved, what, *args, **kwargs)
    except TypeError as exc:
        if not user_could_cause(exc, given):
            raise plugin_bug(resolved, what, exc) from exc
        raise _rejected(resolved, what, kwargs, exc) from exc  # --debug shows the factory's own traceback
    except ValueError as exc:
        raise _rejected(resolved, what, kwargs, exc) from exc


def _rejected(resolved: Resolved, what: str, options: dict[str, Any], exc: BaseException) -> UsageError:
    options = {k: v for k, v in options.items() if k not in ("total_steps", "run_dir")}  # lr... are the user's flags
    rejected = f"rejected its options {options}" if options else "refused"  # a schedule may refuse the optimizer
    return UsageError(f"{what} '{resolved.name}' {rejected}: {exc}")


def _last_frame(exc: BaseException) -> FrameType | None:
    """The frame that raised ``exc``."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame if tb is not None else None


def _raised_in(exc: BaseException, filename: str | None) -> bool:
    """Whether ``exc`` was raised in the file ``filename``."""
    frame = _last_frame(exc)
    return frame is not None and filename is not None and frame.f_code.co_filename == filename


def _raising_class(exc: BaseException) -> str:
    """The class whose method raised ``exc`` (``TensorSplit``), from the frame's ``self``."""
    frame = _last_frame(exc)
    owner = frame.f_locals.get("self") if frame is not None else None
    return type(owner).__name__ if owner is not None else "value"


def load_data(resolved: Resolved, config: RunConfig, *, splits: tuple[str, ...] | None = None) -> DataBundle:
    """The data source's bundle, checked. ``splits``: the ones the caller reads, passed to a
    factory that takes ``splits`` (it may skip the others); a factory without it loads both."""
    args = {**resolved.defaults, **config.dataset_args}
    if splits is not None and takes_keyword(resolved.entry.factory, "splits"):
        args["splits"] = splits
    root = config.resolved_data_root()
    if root.is_file() and resolved.entry.metadata.get("reads_data_root", True):  # each source said "not found under it"
        raise DataNotFoundError(
            f"The data root '{root}' is a file, not a folder: give the folder that holds the data "
            f"(--data-root DIR or ${DATA_ROOT_ENV})."
        )
    try:
        bundle = call_factory(resolved, "Dataset", root=root, download=config.download, **args)
    except TypeError as exc:
        if not user_could_cause(exc, config.dataset_args):
            raise plugin_bug(resolved, "Dataset", exc) from exc
        raise UsageError(f"Dataset '{resolved.name}' could not be built with options {args}: {first_line(exc)}") from exc
    except ValueError as exc:  # the factory's own check of its options (or of its tensors)
        # TensorSplit or DataInfo refused what the source made, from no option of the user's
        if not config.dataset_args and _raised_in(exc, components_module.__file__):
            raise PluginError(
                f"{resolved.named('Dataset')} built an invalid "
                f"{_raising_class(exc)} ({first_line(exc)}): a bug in the plugin, not in your command; --debug shows where."
            ) from exc
        given = f" with options {args}" if args else ""
        raise UsageError(f"Dataset '{resolved.name}' could not be built{given}: {first_line(exc)}") from exc  # --debug shows the factory's own traceback
    check_returned(resolved, "Dataset", bundle, DataBundle)
    info = bundle.info
    source = resolved.named("Dataset")  # its bugs name the plugin
    if info.num_classes < 2:
        raise IncompatibleError(
            f"Dataset '{resolved.name}' has {info.num_classes} class(es): a classifier needs at least two "
            "(check its data folder or --dataset-arg options)."
        )
    if info.is_image and info.mean and (
        len(info.mean) != info.input_shape[0] or any(not s > 0 for s in info.std)
    ):
        raise DataError(
            f"{source} declares mean {list(info.mean)} and std {list(info.std)} for "
            f"{info.input_shape[0]} channels: a plugin bug (one value per channel, std above 0)."
        )
    if info.is_image and info.mean and (any(not 0 <= m <= 1 for m in info.mean) or any(s > 1 for s in info.std)):
        raise DataError(
            f"{source} declares mean {list(info.mean)} and std {list(info.std)}: they are in "
            "units of pixel values scaled to [0, 1] (CIFAR-10's mean is 0.49, not 125): a plugin bug."
        )
    for split_name, split in (("train", bundle.train), ("test", bundle.test)):
        if splits is not None and split_name not in splits:  # not read: left out, or not looked at
            continue
        if isinstance(split, TensorSplit) and len(split):
            _check_tensor_split(source, split_name, split, info)
            bad = labels_out_of_range(split.labels, info.num_classes)
            if bad is not None:
                low, high = bad
                raise DataError(
                    f"{source} {split_name} labels range {low}..{high}, outside "
                    f"0..{bundle.info.num_classes - 1} for its {bundle.info.num_classes} classes."
                )
        if len(split) == 0:
            raise DataError(f"Dataset '{resolved.name}' has an empty {split_name} split.")
        if not isinstance(split, TensorSplit):
            _check_dataset_item(source, split_name, split, info)
    return bundle


def pixels_or_features(dtype: Any) -> bool:
    """Whether a torch or numpy dtype is one blitz takes as input: uint8 pixels or floats."""
    if isinstance(dtype, torch.dtype):
        return dtype == torch.uint8 or dtype.is_floating_point
    return isinstance(dtype, np.dtype) and (dtype == np.uint8 or np.issubdtype(dtype, np.floating))


def _check_dataset_item(source: str, split_name: str, split: Any, info: DataInfo) -> None:
    """A Dataset split's first item against the source's DataInfo, as a TensorSplit is checked
    whole: its mistakes would otherwise surface as a shape or dtype error inside the first step."""
    where = f"{source} {split_name} item 0"
    try:
        item = split[0]
    except Exception as exc:  # noqa: BLE001  # the plugin's bug, named before training
        raise DataError(f"{where} could not be read: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise DataError(f"{where} is {type(item).__name__}: give (image, label) pairs.")
    image, label = item
    shape, dtype = tuple(getattr(image, "shape", ())), getattr(image, "dtype", None)
    if shape != tuple(info.input_shape):
        raise DataError(f"{where} has shape {shape}, but its DataInfo says input_shape {tuple(info.input_shape)}: a plugin bug.")
    if not pixels_or_features(dtype):
        raise DataError(f"{where} is {dtype}: give uint8 pixels (normalized and augmented by blitz) or float features.")
    integer = isinstance(label, (int, np.integer)) and not isinstance(label, bool)
    if isinstance(label, torch.Tensor):
        integer = label.dim() == 0 and not (label.dtype.is_floating_point or label.dtype == torch.bool)
    if not integer:
        raise DataError(f"{where} has label {label!r}: give a class index (an int from 0 to {info.num_classes - 1}).")


def _check_tensor_split(source: str, split_name: str, split: TensorSplit, info: DataInfo) -> None:
    """A data source's tensors against its own DataInfo (a plugin bug caught now, not mid-training);
    ``source`` names it and its plugin."""
    images = split.images
    if tuple(images.shape[1:]) != tuple(info.input_shape):
        raise DataError(
            f"{source} {split_name} images have shape {tuple(images.shape[1:])} each, but its "
            f"DataInfo says input_shape {tuple(info.input_shape)}: a plugin bug."
        )
    if not pixels_or_features(images.dtype):
        raise DataError(
            f"{source} {split_name} images are {images.dtype}: give uint8 pixels (normalized and "
            "augmented by blitz) or float features, not another integer type."
        )


def data_warnings(name: str, bundle: DataBundle) -> list[str]:
    """Data a model can train on that is probably not what its source meant: float inputs
    (used as they are) far outside a normalized range, as raw 0-255 pixels stored as floats are,
    and a mean/std declared for float inputs, which blitz does not apply to them."""
    train = bundle.train
    if not (isinstance(train, TensorSplit) and train.images.is_floating_point() and len(train)):
        return []
    warnings = []
    largest = float(train.images[:1000].abs().amax())  # a sample: this runs on every start
    if largest > 20 and bundle.info.is_image:  # features of other shapes are on any scale their source chose
        warnings.append(
            f"Dataset '{name}' gives float inputs with values up to {largest:g}: blitz uses float inputs as "
            "they are, unnormalized (uint8 pixels are normalized with the data's mean and std); store pixels as "
            "uint8, or scale the inputs to a few units."
        )
    if bundle.info.mean:
        warnings.append(
            f"Dataset '{name}' declares a mean and std, but its inputs are floats, used as they are: the mean "
            "and std apply to uint8 pixels only."
        )
    return warnings


def with_normalization(info: DataInfo, config: RunConfig) -> DataInfo:
    """The data's DataInfo with the config's mean/std override, if any."""
    if config.mean is None and config.std is None:
        return info
    if not info.is_image:
        raise UsageError(
            f"mean/std overrides apply to image data only; dataset '{config.dataset}' gives inputs of "
            f"shape {tuple(info.input_shape)}."
        )
    channels = info.input_shape[0]
    mean = tuple(config.mean if config.mean is not None else info.mean)
    std = tuple(config.std if config.std is not None else info.std)
    if len(mean) != channels or len(std) != channels:
        raise UsageError(
            f"mean/std need one value per channel ({channels} for input shape {tuple(info.input_shape)}), "
            f"got {len(mean)} and {len(std)}."
        )
    if any(s <= 0 for s in std):
        raise UsageError(f"std values must be positive, got {list(std)}.")
    return dataclasses.replace(info, mean=mean, std=std)


def check_augment(info: DataInfo, config: RunConfig) -> None:
    """Augmentation applies to images, and its sizes must fit them (reflect padding needs translate < side)."""
    if not info.is_image:
        if config.augment.active:  # it would be silently skipped
            raise IncompatibleError(
                f"--flip/--translate/--cutout augment images, but dataset '{config.dataset}' gives inputs of "
                f"shape {tuple(info.input_shape)}: drop them."
            )
        return
    side = min(info.input_shape[1:])
    if config.augment.translate >= side or config.augment.cutout > side:
        raise IncompatibleError(
            f"--translate {config.augment.translate} / --cutout {config.augment.cutout} do not fit "
            f"dataset '{config.dataset}' images of {info.input_shape[1]}x{info.input_shape[2]} pixels: "
            f"use translate below {side} and cutout up to {side}."
        )


def build_model(resolved: Resolved, info: DataInfo, config: RunConfig, *, check_types: bool = True) -> nn.Module:
    """The model for ``info``'s data; ``check_types=False`` for arguments a checkpoint saved, which
    the factory took when it trained (an older blitz checked no types)."""
    args = {**resolved.defaults, **config.model_args}
    try:
        model = call_factory(
            resolved, "Model", num_classes=info.num_classes, input_shape=info.input_shape, check_types=check_types, **args
        )
    except TypeError as exc:
        if not user_could_cause(exc, config.model_args):  # `nn.Linear(..., bais=False)` in the factory
            raise plugin_bug(resolved, "Model", exc) from exc
        if unexpected_keyword(exc) is None:  # a value of the wrong type, most likely
            raise UsageError(
                f"Model '{resolved.name}' could not be built with --model-arg {config.model_args} "
                f"({first_line(exc)}): check those values' types."
            ) from exc  # --debug shows the factory's own traceback
        raise UsageError(f"Model '{resolved.name}' rejected its arguments {args}: {exc}.") from exc  # --debug shows the factory's own traceback
    except ValueError as exc:  # the factory's own check of shapes or arguments
        given = f" with --model-arg {config.model_args}" if config.model_args else ""
        raise IncompatibleError(
            f"Model '{resolved.name}' does not fit dataset '{config.dataset}': it cannot be built for "
            f"inputs of shape {tuple(info.input_shape)} with {info.num_classes} classes{given} ({exc})."
            + (" Check those arguments too." if given else "")
        ) from exc  # --debug shows the factory's own traceback
    return check_returned(resolved, "Model", model, nn.Module)


def check_batch_norm_batches(
    model: nn.Module, config: RunConfig, examples_per_rank: int, model_name: str, input_shape: tuple[int, ...]
) -> None:
    """Refuse training batches of one example where a BatchNorm layer would see one value per
    channel (PyTorch raises at the first step: "Expected more than 1 value per channel when
    training"); with feature maps larger than 1x1 a batch of one trains. One example goes through
    the model in eval mode (no statistics change, no dropout noise) while hooks on its BatchNorm
    layers note how many values per channel each would get."""
    if min(config.batch_size, examples_per_rank) != 1:
        return
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    values_per_channel: list[int] = []

    def note(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        x = inputs[0] if inputs else None
        if isinstance(x, torch.Tensor) and x.dim() >= 2 and x.shape[1]:
            values_per_channel.append(x.numel() // x.shape[1])

    handles = [m.register_forward_pre_hook(note) for m in norms]
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, *input_shape))
    except Exception:  # noqa: BLE001  # another problem: check_fit and the first step report it
        return
    finally:
        for handle in handles:
            handle.remove()
    if not values_per_channel or min(values_per_channel) > 1:
        return
    cause = (
        "--batch-size 1" if config.batch_size == 1
        else f"a training split of {examples_per_rank} example(s) per process"
    )
    raise IncompatibleError(
        f"Model '{model_name}' has BatchNorm layers, which cannot train on batches of one example ({cause}): "
        "use --batch-size 2 or more and at least 2 training examples per process, or a model without BatchNorm."
    )


def check_trainable(resolved: Resolved, model: nn.Module) -> None:
    """Refuse a model with no trainable parameter: the optimizer would say "empty parameter list",
    which reads as its own or the user's --lr. Layers kept in a plain list are the usual cause."""
    parameters = list(model.parameters())
    if not any(p.requires_grad for p in parameters):
        why = ("every one has requires_grad=False (frozen): leave some trainable" if parameters else
               "layers kept in a plain list or dict are not registered (use nn.ModuleList or nn.ModuleDict)")
        raise PluginError(
            f"{resolved.named('Model')} has no trainable parameters, so nothing to "
            f"train: {why}."
        )


def check_fit(model: nn.Module, info: DataInfo, model_name: str, dataset_name: str) -> None:
    """Run two fake examples through the model, so a mismatch fails now with both names."""
    shape = (2, *info.input_shape)
    try:
        with eval_mode(model), torch.no_grad():
            out = model(torch.zeros(shape))
    except Exception as exc:  # noqa: BLE001  # a mismatch, or the model's bug: either way named, traceback with --debug
        text = str(exc).strip()
        detail = f"{type(exc).__name__}: {text.splitlines()[0][:160] if text else ''}"
        raise IncompatibleError(
            f"Model '{model_name}' does not fit dataset '{dataset_name}': inputs of shape "
            f"{tuple(info.input_shape)} with {info.num_classes} classes fail in the model ({detail}). "
            "Pick a model made for this input size, or pass model arguments with --model-arg."
        ) from exc  # --debug shows the model's own traceback
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, info.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise IncompatibleError(
            f"Model '{model_name}' does not fit dataset '{dataset_name}': it maps inputs of shape "
            f"{tuple(info.input_shape)} to {got}, but the dataset has {info.num_classes} classes "
            f"(expected (N, {info.num_classes}))."
        )


def check_schedule(resolved: Resolved, scheduler: Any) -> Any:
    """A schedule factory's result, checked as ``check_returned`` does, and not an optimizer: one
    has step() and state_dict() too (``return optimizer``), and taken as the schedule it would
    step the optimizer a second time after every step."""
    if isinstance(scheduler, torch.optim.Optimizer):
        raise PluginError(
            f"{resolved.named('Schedule')} returned {type(scheduler).__name__}, "
            "an optimizer, not a learning-rate scheduler: return one over it (torch.optim.lr_scheduler)."
        )
    return check_returned(resolved, "Schedule", scheduler, ("step", "state_dict", "load_state_dict"))


def check_returned(resolved: Resolved, what: str, value: Any, wanted: type | tuple[str, ...]) -> Any:
    """A factory's result, if it is what blitz needs: an instance of ``wanted``, or an object
    with the methods named in it. Anything else is the plugin's bug, said before training."""
    if isinstance(wanted, type):
        ok, needs = isinstance(value, wanted), f"a {wanted.__module__}.{wanted.__qualname__}"
    else:
        ok, needs = all(callable(getattr(value, m, None)) for m in wanted), "an object with " + ", ".join(f"{m}()" for m in wanted)
    if not ok:
        raise PluginError(
            f"{resolved.named(what)} returned {type(value).__name__}, "
            f"not {needs}."
        )
    return value

