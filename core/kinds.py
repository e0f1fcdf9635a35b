"""The kinds of component a plugin can register, in one table that the rest of blitz reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One kind of component: ``models``, registered by ``register_models``, named by a run's
    ``model`` field, its options in ``model_args``."""

    name: str  # plural, as in registry.toml's tables and `blitz list <name>`
    noun: str  # singular, for messages: "Unknown model 'x'"
    field: str | None  # the RunConfig field naming one (loggers: a list, `loggers`)
    options: str | None  # the RunConfig field of its factory's options, where it has one

    @property
    def list_command(self) -> str:
        return f"blitz list {self.name}"


COMPONENT_KINDS: tuple[Kind, ...] = (
    Kind("models", "model", "model", "model_args"),
    Kind("datasets", "dataset", "dataset", "dataset_args"),
    Kind("optimizers", "optimizer", "optimizer", "optimizer_args"),
    Kind("schedules", "schedule", "schedule", "schedule_args"),
    Kind("strategies", "strategy", "strategy", None),
    Kind("loggers", "logger", None, None),  # a list of them; their options are logger_args.<name>
)

KINDS: dict[str, Kind] = {kind.name: kind for kind in COMPONENT_KINDS}

# RunConfig field -> the kind its value names ("model" -> "models")
NAME_FIELDS: dict[str, str] = {kind.field: kind.name for kind in COMPONENT_KINDS if kind.field}

# A component's options belong to it: a later layer that names another component (say
# `--schedule onecycle` over a recipe's linear schedule) drops the earlier layers' options for it.
OPTIONS_OF: dict[str, str] = {kind.field: kind.options for kind in COMPONENT_KINDS if kind.field and kind.options}
