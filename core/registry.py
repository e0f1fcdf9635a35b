"""One registry type for every kind of component: name -> factory, description and metadata.

Plugins fill registries through their ``register_<kind>`` hooks; the core owns the storage, so
a name registered twice is caught here and reported against the plugin that came second.
A name ending in ``/*`` (``timm/*``) registers a family: ``timm/resnet18`` resolves to it, and
the factory receives the part after the slash as ``variant``.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from blitz.errors import PluginError, UnknownNameError, natural_key

# The run settings an optimizer may register values for (`hyperparameters=` in its registration).
OPTIMIZER_HYPERPARAMETERS = ("lr", "momentum", "weight_decay")

_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/\*)?$")


@dataclass(frozen=True)
class Entry:
    """A registered component: how to build it and what it is."""

    name: str
    factory: Callable[..., Any]
    description: str = ""
    plugin: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None  # set when a family entry (``timm/*``) resolved a concrete name

    @property
    def is_family(self) -> bool:
        return self.name.endswith("/*")


# The register() keywords blitz itself reads (besides the name and factory).
_READ_BY_BLITZ = ("description", "hyperparameters", "list_variants", "reads_data_root", "validate_variant")
# ... those read for one kind only: another kind's (a model's ``hparams``) is the plugin's own key
_READ_FOR_ONE_KIND = {"hyperparameters": "optimizer", "reads_data_root": "dataset"}


def _misspelling_of(key: str, kind: str) -> str | None:
    """The keyword blitz reads that ``key`` is a slip of the keyboard for (``descripton``), if any:
    near-identical or a common abbreviation only, as a plugin's own keys (``citation``,
    ``variants``) are kept; keys read for one kind only (``hyperparameters`` for optimizers,
    ``reads_data_root`` for datasets) are another kind's own (a model's ``hparams``)."""
    read = [k for k in _READ_BY_BLITZ if _READ_FOR_ONE_KIND.get(k, kind) == kind]
    if key in read:
        return None
    squashed = key.lower().replace("-", "_")
    for known in read:
        if squashed == known or difflib.SequenceMatcher(None, squashed, known).ratio() >= 0.8:
            return known
    abbreviations = {"descr": "description", "desc": "description", "hparam": "hyperparameters",
                     "hyperparam": "hyperparameters"}
    meant = abbreviations.get(squashed.replace("_", "").rstrip("s"))
    return meant if meant in read else None


class Registry:
    """Components of one kind (models, datasets, ...), keyed by name."""

    def __init__(self, kind: str, list_command: str) -> None:
        self.kind = kind
        self.list_command = list_command
        self._entries: dict[str, Entry] = {}
        self.refused: dict[str, list[str]] = {}  # a name -> the plugins whose registration of it was refused

    def add(self, entry: Entry) -> None:
        """Add ``entry``; a clash or an invalid name raises :class:`PluginError`."""
        if not _VALID_NAME.match(entry.name):
            raise PluginError(
                f"Plugin '{entry.plugin}' registered an invalid {self.kind} name {entry.name!r}: "
                "use letters, digits, '_', '-' or '.', optionally ending in '/*'."
            )
        if not callable(entry.factory):
            raise PluginError(
                f"Plugin '{entry.plugin}' registered {self.kind} '{entry.name}' with a factory "
                "that is not callable."
            )
        if not isinstance(entry.description, str):
            raise PluginError(
                f"Plugin '{entry.plugin}' registered {self.kind} '{entry.name}' with description "
                f"{entry.description!r}: give a string."
            )
        for key in entry.metadata:  # a plugin's own keys are kept; one that looks like blitz's is a typo
            meant = _misspelling_of(key, self.kind)
            if meant is not None:
                raise PluginError(
                    f"Plugin '{entry.plugin}' registered {self.kind} '{entry.name}' with '{key}=': did you mean "
                    f"'{meant}'? (blitz reads {', '.join(sorted(_READ_BY_BLITZ))}; other keys are kept as they are.)"
                )
        for key in ("list_variants", "validate_variant"):
            if key in entry.metadata and not (entry.is_family and callable(entry.metadata[key])):
                raise PluginError(
                    f"Plugin '{entry.plugin}' registered {self.kind} '{entry.name}' with {key}="
                    f"{entry.metadata[key]!r}: give a function, and only for a family (a name ending in '/*')."
                )
        hyperparameters = entry.metadata.get("hyperparameters") if self.kind == "optimizer" else None  # else the plugin's own key
        if hyperparameters is not None and not (
            isinstance(hyperparameters, dict) and set(hyperparameters) <= set(OPTIMIZER_HYPERPARAMETERS)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in hyperparameters.values())
        ):
            raise PluginError(
                f"Plugin '{entry.plugin}' registered {self.kind} '{entry.name}' with hyperparameters "
                f"{hyperparameters!r}: give a dict of numbers for lr, momentum and weight_decay."
            )
        reads_data_root = entry.metadata.get("reads_data_root", True) if self.kind == "dataset" else True
        if not isinstance(reads_data_root, bool):
            raise PluginError(
                f"Plugin '{entry.plugin}' registered {self.kind} '{entry.name}' with reads_data_root="
                f"{reads_data_root!r}: give True or False (False: it reads no files, so --data-root is not used)."
            )
        existing = self._entries.get(entry.name)
        if existing is not None:
            if existing.plugin != entry.plugin:  # a plugin registering a name twice contests nothing
                self.refused.setdefault(entry.name, []).append(entry.plugin)
            raise PluginError(
                f"Plugin '{entry.plugin}' registers {self.kind} '{entry.name}', which plugin "
                f"'{existing.plugin}' already registers; the first registration is kept: register yours under "
                f"another name."
            )
        self._entries[entry.name] = entry

    def remove(self, name: str) -> None:
        """Drop the entry registered under exactly ``name``."""
        del self._entries[name]

    def get(self, name: str) -> Entry:
        """The entry for ``name``, resolving families; unknown names raise UnknownNameError."""
        entry = self._entries.get(name)
        if entry is not None and not entry.is_family:
            return entry
        if "/" in name:
            prefix, variant = name.split("/", 1)
            family = self._entries.get(f"{prefix}/*")
            if family is not None and variant:
                validate = family.metadata.get("validate_variant")
                if validate is not None and not self._family_call(family, "validate_variant", variant):
                    raise UnknownNameError(
                        self.kind, name, self._variant_suggestions(family), self.list_command
                    )
                return Entry(
                    name=name,
                    factory=family.factory,
                    description=family.description,
                    plugin=family.plugin,
                    metadata=family.metadata,
                    variant=variant,
                )
        error = UnknownNameError(self.kind, name, self._entries, self.list_command)
        if "/" not in name and not error.suggestions():
            error.suggest(self._family_member(name))
        raise error

    def _family_member(self, name: str) -> str | None:
        """``prefix/name`` where a family has a member ``name`` (``vit_tiny_patch16_224`` is
        ``timm/vit_tiny_patch16_224``): a bare name given for a family's member is a common slip."""
        for family in self.entries("*/*"):
            if not family.is_family or "validate_variant" not in family.metadata:
                continue
            with contextlib.suppress(Exception):  # only a hint: a broken family is reported where it is used
                if family.metadata["validate_variant"](name):
                    return f"{family.name[:-2]}/{name}"
        return None

    def _variant_suggestions(self, family: Entry) -> list[str]:
        prefix = family.name[:-2]
        return [f"{prefix}/{v}" for v in self.variants(family)]

    def variants(self, family: Entry) -> list[str]:
        """The names a family's ``list_variants`` gives (none without one)."""
        return list(self._family_call(family, "list_variants")) if "list_variants" in family.metadata else []

    def _family_call(self, family: Entry, key: str, *args: Any) -> Any:
        """A family's ``list_variants``/``validate_variant``; its exception is the plugin's error."""
        try:
            return family.metadata[key](*args)
        except Exception as exc:
            raise PluginError(
                f"Plugin '{family.plugin}': {key} of {self.kind} '{family.name}' raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.get(name)
        except UnknownNameError:
            return False
        return True

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching the fnmatch ``pattern``, in natural order."""
        return sorted(fnmatch.filter(self._entries, pattern), key=natural_key)

    def entries(self, pattern: str = "*") -> list[Entry]:
        return [self._entries[name] for name in self.names(pattern)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
