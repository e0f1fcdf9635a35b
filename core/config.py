"""The run configuration: one validated model, resolved from layers with provenance.

Precedence, lowest first: built-in defaults < recipe (registry.toml's or a plugin's) < config file
< CLI flags. ``blitz.resolve.resolve_config`` merges the layers (``merge_layers``, here) and
records where each value came from, for ``blitz run --print-config``.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from blitz.errors import ConfigError, closest_name
from blitz.kinds import OPTIONS_OF

DATA_ROOT_ENV = "BLITZ_DATA_ROOT"
Precision = Literal["32", "bf16", "16-mixed"]
MAX_CPU_THREADS = 1024
CPU_THREADS_HINT = f"give a whole number of threads from 1 to {MAX_CPU_THREADS}, or auto"


# Strict: a config file's `epochs = true` or `shuffle = 1` is refused, not read as 1 or true;
# and no setting takes NaN or infinity (they only surface later as a diverged loss).
# protected_namespaces=(): fields named model_* (model_args) are blitz's, not pydantic's; pydantic
# before 2.10 warned about them on every run.
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, protected_namespaces=())


class AugmentConfig(BaseModel):
    """Batched augmentation applied on the training device (image data only)."""

    model_config = _STRICT

    flip: bool = Field(False, description="random horizontal flip, probability 0.5")
    flip_mode: Literal["random", "alternate"] = Field(
        "random",
        description="'random': each image flipped with probability 0.5 every epoch; 'alternate': at random "
        "in the first epoch, then every image the other way round each epoch (airbench's scheme)",
    )
    translate: int = Field(0, ge=0, le=16, description="random translation, pixels (reflect padding)")
    cutout: int = Field(0, ge=0, le=32, description="side of a zeroed random square, pixels; 0 = off")

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return self.flip or self.translate > 0 or self.cutout > 0

    @property
    def alternates_flips(self) -> bool:
        """Whether flips follow the alternating scheme (which needs to know each example)."""
        return self.flip and self.flip_mode == "alternate"


PATH_OPTION_SUFFIXES = ("path", "_file", "_dir")


def absolute_if_path(key: str, value: Any) -> Any:
    """An option named like a path (``path``, ``*_path``, ``*_file``, ``*_dir``) whose value names
    an existing file or folder relative to the current folder, as an absolute path; else as is."""
    if not (isinstance(value, str) and key.endswith(PATH_OPTION_SUFFIXES) and value):
        return value
    path = Path(value).expanduser()
    if path.exists():
        return str(path.absolute())
    return str(path) if value.startswith("~") else value


class RunConfig(BaseModel):
    """Everything one training run needs. Unknown keys are errors."""

    model_config = ConfigDict(**_STRICT, validate_assignment=True)

    model: str = Field("lenet", description="model name; see `blitz list models`")
    dataset: str = Field("cifar10", description="data source name; see `blitz list datasets`")
    optimizer: str = Field("sgd", description="optimizer name; see `blitz list optimizers`")
    schedule: str = Field("constant", description="learning-rate schedule; see `blitz list schedules`")
    strategy: str = Field("auto", description="device strategy; see `blitz list strategies`")
    device: str | None = Field(None, description="device for cpu/cuda, e.g. 'cuda:1'")
    loggers: list[str] = Field(default_factory=lambda: ["jsonl"], description="metric loggers")

    epochs: int = Field(2, ge=0, le=100_000, description="passes over the training set")
    batch_size: int = Field(4, ge=1, description="training examples per step, per process")
    eval_batch_size: int = Field(1000, ge=1, description="examples per evaluation batch")
    eval_every: int = Field(1, ge=0, description="epochs between test evaluations; 0 = only after the last")
    checkpoint_every: int = Field(
        1, ge=0, description="epochs between checkpoints; 0 = only after the last (and when stopped)"
    )
    lr: float = Field(0.001, gt=0, le=1e4, description="learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum / Adam beta1")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    shuffle: bool = Field(True, description="reshuffle the training set every epoch")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    mean: list[float] | None = Field(None, description="override the data's per-channel mean (pixels in [0, 1])")
    std: list[float] | None = Field(None, description="override the data's per-channel std (pixels in [0, 1])")
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes (Dataset sources only)")
    limit_steps: int | None = Field(None, ge=1, description="stop each epoch after this many steps")

    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed for weights, shuffling and augmentation")
    deterministic: bool = Field(False, description="deterministic kernels: bit-identical reruns")
    precision: Precision = Field("32", description="32, bf16 (autocast) or 16-mixed (fp16 + scaler)")
    channels_last: bool = Field(False, description="channels-last memory format for image models")
    compile: bool = Field(False, description="torch.compile the model")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = Field(
        "default", description="torch.compile mode; reduce-overhead replays CUDA graphs on GPUs"
    )
    cuda_graphs: bool = Field(
        False, description="replay each training step's forward and backward as CUDA graphs (one GPU, not compiled)"
    )
    cpu_threads: int | Literal["auto"] | None = Field(
        None, description="PyTorch CPU threads, or auto (1 or 2 for training steps, the faster as timed); "
        "default: PyTorch's (1 for training steps of batches up to 16)",
    )

    data_root: Path | None = Field(None, strict=False, description=f"data folder; default ${DATA_ROOT_ENV} or ./data")
    download: bool = Field(False, description="download the data set if missing (needs a network)")
    out: Path | None = Field(None, strict=False, description="run directory; default runs/<time>-<name>-<dataset>")
    log_every: int = Field(50, ge=1, description="steps between progress updates and step logs")

    model_args: dict[str, Any] = Field(default_factory=dict, description="extra model factory arguments")
    dataset_args: dict[str, Any] = Field(default_factory=dict, description="extra data source arguments")
    optimizer_args: dict[str, Any] = Field(default_factory=dict, description="extra optimizer arguments")
    schedule_args: dict[str, Any] = Field(default_factory=dict, description="extra schedule arguments")
    logger_args: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="each metric logger's options, by its name: {tensorboard = {flush_secs = 10}}"
    )

    recipe: str | None = Field(None, description="the registry.toml recipe this run started from")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_written(cls, value: Any) -> Any:
        # TOML's `precision = 32` is the number, and Lightning's users write 16 for fp16
        if type(value) is int and value == 32:
            return "32"
        if value in (16, "16"):
            raise ValueError("fp16 is '16-mixed' (fp16 autocast with a gradient scaler); or give 'bf16' or '32'")
        return value

    @field_validator("data_root", "out", "device", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        # "" is the current folder to Path, and no device at all: an unset $VARIABLE in a
        # generated config, most likely, as the command line's flags refuse it too
        if isinstance(value, str) and not value.strip():
            raise ValueError("an empty value; give one, or leave the key out for the default")
        return value

    @field_validator("data_root", "out")
    @classmethod
    def _expand_home(cls, path: Path | None) -> Path | None:
        # "~/data" as the docs write it, also from a config file or a quoted flag (no shell
        # expansion); absolute, so that the run's saved config finds its data from any folder
        # (`--resume`, `blitz eval`)
        return path.expanduser().absolute() if path is not None else None

    @field_validator("cpu_threads", mode="before")
    @classmethod
    def _thread_count(cls, value: Any) -> Any:
        # One message for every wrong value (a union's own errors name only its first member);
        # "AUTO" as the command line takes it
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if value is None or (type(value) is int and 1 <= value <= MAX_CPU_THREADS):
            return value
        raise ValueError(CPU_THREADS_HINT)

    @field_validator("loggers")
    @classmethod
    def _each_logger_once(cls, loggers: list[str]) -> list[str]:
        # Twice in a config file would write every record twice (the command line merges too).
        return list(dict.fromkeys(loggers))

    @field_validator("model_args", "dataset_args")
    @classmethod
    def _absolute_paths(cls, options: dict[str, Any]) -> dict[str, Any]:
        # The same for options that name a file or folder (`path`, `test_path`, `pretrained_file`,
        # ...) given relative to the current folder.
        return {key: absolute_if_path(key, value) for key, value in options.items()}

    @field_validator("model_args", "dataset_args", "optimizer_args", "schedule_args")
    @classmethod
    def _not_supplied_by_blitz(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # blitz passes these to every factory of the kind itself: as an option too, the factory
        # call crashed ("got multiple values for keyword argument 'lr'").
        for key in options:
            how = SUPPLIED_BY_BLITZ[info.field_name].get(key)
            if how is not None:
                raise ValueError(f"option '{key}' is not a component option: {how}")
        return options

    @field_validator("model_args", "dataset_args", "optimizer_args", "schedule_args")
    @classmethod
    def _finite_numbers(cls, options: dict[str, Any]) -> dict[str, Any]:
        return finite_options(options)

    @field_validator("logger_args")
    @classmethod
    def _logger_options(cls, options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, table in options.items():
            if "run_dir" in table:  # blitz passes it to every logger factory
                raise ValueError(f"option 'run_dir' of logger '{name}' is not a logger option: it is the run's folder")
            finite_options(table)
        return options

    def resolved_data_root(self) -> Path:
        if self.data_root is not None:
            return self.data_root
        return Path(os.environ.get(DATA_ROOT_ENV) or "data").expanduser().absolute()  # empty: unset


def unused_logger_options(config: RunConfig, provenance: dict[str, str] | None = None) -> str | None:
    """Why the config's ``logger_args`` would be ignored (options for a logger it does not use),
    naming where they came from and the logger likely meant; None if they are all used."""
    unused = sorted(set(config.logger_args) - set(config.loggers))
    if not unused:
        return None
    name = unused[0]
    source = (provenance or {}).get(f"logger_args.{name}")
    where = f" (from {source})" if source and source != "command line" else ""
    meant = closest_name(name, config.loggers)
    fix = f"did you mean '{meant}'?" if meant else f"add it with --logger {name}, or drop its options"
    return (f"logger_args gives options to '{name}'{where}, which is not among this run's loggers "
            f"({', '.join(config.loggers) or 'none'}): {fix}")


def finite_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` if no value is inf or nan: TOML reads them, but no component option means them,
    and the run's saved config.toml could not hold them; refused here, by name."""
    for key, value in options.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError(f"option '{key}' must be a finite number, got {value!r}")
    return options


# What blitz passes to every factory of a kind, and where the user sets it instead.
SUPPLIED_BY_BLITZ: dict[str, dict[str, str]] = {
    "model_args": {"num_classes": "it comes from the dataset", "input_shape": "it comes from the dataset"},
    "dataset_args": {"root": "use --data-root", "download": "use --download",
                     "splits": "blitz asks for the splits a command reads ('blitz eval' only the test split)"},
    "optimizer_args": {"lr": "use --lr", "momentum": "use --momentum", "weight_decay": "use --weight-decay"},
    "schedule_args": {"total_steps": "it comes from --epochs and the data"},
}
for _supplied in SUPPLIED_BY_BLITZ.values():  # every kind's families: `--model timm/resnet50`
    _supplied["variant"] = "it comes from the component's name (--model timm/resnet50 builds timm's resnet50): name the one you mean"

_NESTED = {"augment", "model_args", "dataset_args", "optimizer_args", "schedule_args", "logger_args"}


def read_toml(path: Path, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file, turning every failure into a ConfigError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not TOML's
    except FileNotFoundError:
        raise ConfigError(f"The {what} '{path}' does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the {what} '{path}': {exc}.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        other = {".json": "JSON", ".yaml": "YAML", ".yml": "YAML"}.get(path.suffix.lower())
        hint = f" ({other} is not read: write the {what} in TOML)" if other else ""
        raise ConfigError(f"The {what} '{path}' is not valid TOML{hint}: {exc}.") from None


class Layer:
    """One source of settings: a name for provenance and a (possibly nested) dict of values."""

    def __init__(self, source: str, values: dict[str, Any]) -> None:
        self.source = source
        self.values = values


def merge_layers(
    layers: list[Layer], canonical: Callable[[str, Any], Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge layers in order; nested tables merge key by key, and a component's options are
    dropped when a later layer picks another component. ``canonical(field, name)`` maps a name
    to the component it stands for (``resnet18`` -> ``timm/resnet18``), so that naming the same
    component another way keeps its options. Returns (values, provenance)."""
    same = canonical or (lambda field, name: name)
    merged: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    tied: set[str] = set()  # "schedule_args.warmup": given by a layer that also named the schedule
    for layer in layers:
        for component, options in OPTIONS_OF.items():
            if (
                component in layer.values and component in merged
                and same(component, layer.values[component]) != same(component, merged[component])
            ):
                # Options given with the old component go with it; options given without naming
                # one (a config file's [schedule_args] over a recipe's schedule) stay.
                kept = {k: v for k, v in (merged.get(options) or {}).items() if f"{options}.{k}" not in tied}
                merged[options] = kept
                for key in [k for k in provenance if k.startswith(f"{options}.") and k in tied]:
                    del provenance[key]
                    tied.discard(key)
        for component, options in OPTIONS_OF.items():
            if isinstance(layer.values.get(options), dict):
                for sub in layer.values[options]:
                    (tied.add if component in layer.values else tied.discard)(f"{options}.{sub}")
        if isinstance(layer.values.get("loggers"), list) and isinstance(merged.get("logger_args"), dict):
            # a new list of loggers (--logger on a resume, over a recipe's): the others' options go
            keep = set(layer.values["loggers"])
            merged["logger_args"] = {name: table for name, table in merged["logger_args"].items() if name in keep}
            for key in [k for k in provenance if k.startswith("logger_args.") and k.split(".")[1] not in keep]:
                del provenance[key]
        for key, value in layer.values.items():
            if key == "logger_args" and isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = dict(merged[key])  # per logger, then per option: a layer adds, not replaces
                for name, table in value.items():
                    old = merged[key].get(name)
                    merged[key][name] = {**old, **table} if isinstance(old, dict) and isinstance(table, dict) else table
                    provenance[f"{key}.{name}"] = layer.source
            elif key in _NESTED and isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
                for sub in value:
                    provenance[f"{key}.{sub}"] = layer.source
            else:
                merged[key] = value
                if isinstance(value, dict) and key in _NESTED:
                    for sub in value:
                        provenance[f"{key}.{sub}"] = layer.source
                else:
                    provenance[key] = layer.source
    return merged, provenance


def validate(values: dict[str, Any], provenance: dict[str, str]) -> RunConfig:
    """Build a RunConfig; the first problem becomes a one-line ConfigError naming field and source."""
    try:
        return RunConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, provenance)) from None


def describe_validation_error(exc: ValidationError, provenance: dict[str, str]) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "config"
    source = provenance.get(field) or provenance.get(field.split(".")[0])
    if source is None:  # a nested table checked as a whole: its keys' source, where they share one
        sources = {v for k, v in provenance.items() if k.startswith(f"{field}.")}
        source = sources.pop() if len(sources) == 1 else None
    where = f" (from {source})" if source else ""
    if error["type"] == "extra_forbidden":
        key = field.rsplit(".", 1)[-1]
        if "." not in field:  # `flip = true` at the top of a file: the flags are --flip etc., the keys live in [augment]
            meant = closest_name(key, [*_known_keys(field), *AugmentConfig.model_fields])
            if meant in AugmentConfig.model_fields:
                return f"Unknown config key '{field}'{where}. Augmentation keys go in an [augment] table: '{meant}' there."
        close = closest_name(key, _known_keys(field))
        if close is not None:
            prefix = "augment." if field.startswith("augment.") else ""
            return f"Unknown config key '{field}'{where}. Did you mean '{prefix}{close}'?"
        known = ", ".join(_known_keys(field))
        return f"Unknown config key '{field}'{where}. Known keys: {known}."
    given = error.get("input")
    given_text = f"; got {given!r}" if not isinstance(given, dict) else ""
    extra = len(exc.errors()) - 1
    more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
    message = error["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own message
    return f"Invalid value for '{field}'{where}: {message}{given_text}.{more}"


def _known_keys(field: str) -> list[str]:
    if field.startswith("augment."):
        return sorted(AugmentConfig.model_fields)
    return sorted(RunConfig.model_fields)


def to_toml_dict(config: RunConfig) -> dict[str, Any]:
    """The config as TOML-ready data (no None values, paths as strings), rerunnable with --config.

    ``out`` is left out: rerunning a config starts a new run rather than reusing the old folder.
    """
    data = config.model_dump(mode="json", exclude_none=True, exclude={"out"})
    return {key: value for key, value in data.items() if value != {} or key == "augment"}
