"""registry.toml: blitz's catalog of named components (with defaults) and recipes.

A catalog entry gives a short name (``resnet18``) to a registered component (``timm/resnet18``)
with defaults for its factory; a recipe is a complete, named training setup. The file is
validated with pydantic when loaded, and every entry must resolve to an installed plugin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from blitz.config import RunConfig, read_toml, validate
from blitz.errors import ConfigError, UnknownNameError
from blitz.kinds import KINDS, NAME_FIELDS
from blitz.plugin_host import PluginHost, get_host, ready_host
from blitz.registry import Entry

CATALOG_ENV = "BLITZ_REGISTRY"
DEFAULT_CATALOG = Path(__file__).with_name("registry.toml")


class CatalogEntry(BaseModel):
    """A named component: the plugin that provides it, what it is, and its defaults."""

    model_config = ConfigDict(extra="forbid")

    plugin: str = Field(description="entry-point name of the plugin that provides it")
    component: str | None = Field(None, description="registered name it stands for; default: its own")
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict, description="factory keyword arguments")


class Recipe(BaseModel):
    """A complete training setup: any RunConfig keys, plus a description and measured figures."""

    model_config = ConfigDict(extra="allow")

    description: str
    measured: str = Field("", description="what this recipe was measured to do, where, with what")


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[str, CatalogEntry] = Field(default_factory=dict)
    datasets: dict[str, CatalogEntry] = Field(default_factory=dict)
    optimizers: dict[str, CatalogEntry] = Field(default_factory=dict)
    schedules: dict[str, CatalogEntry] = Field(default_factory=dict)
    strategies: dict[str, CatalogEntry] = Field(default_factory=dict)
    loggers: dict[str, CatalogEntry] = Field(default_factory=dict)
    recipes: dict[str, Recipe] = Field(default_factory=dict)

    def entries(self, kind: str) -> dict[str, CatalogEntry]:
        return getattr(self, kind)

    def recipe_values(self, name: str) -> dict[str, Any]:
        """A recipe's RunConfig values; an unknown recipe raises UnknownNameError."""
        recipe = self.recipes.get(name)
        if recipe is None:
            raise UnknownNameError("recipe", name, self.recipes, "blitz list recipes")
        values = recipe.model_dump(exclude={"description", "measured"})
        return {key: value for key, value in values.items() if key in (recipe.model_extra or {})}


def catalog_path() -> Path:
    return Path(os.environ.get(CATALOG_ENV) or DEFAULT_CATALOG)  # empty: unset


def parse_catalog(path: Path) -> Catalog:
    """Read and validate a catalog file; errors name the file and the offending key."""
    data = read_toml(path, what="registry file")
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        raise ConfigError(f"Invalid registry file '{path}': '{key}': {error['msg']}.") from None
    for name, recipe in catalog.recipes.items():
        unknown = sorted(set(recipe.model_extra or {}) - set(RunConfig.model_fields))
        if unknown:
            raise ConfigError(
                f"Invalid registry file '{path}': 'recipes.{name}.{unknown[0]}' is not a config key."
            )
    return catalog


@lru_cache(maxsize=4)
def _load_cached(path: Path, mtime: float) -> Catalog:
    return parse_catalog(path)


def load_catalog(
    path: Path | None = None, *, plugin_recipes: bool = True, host: PluginHost | None = None
) -> Catalog:
    """The catalog file, with the recipes plugins register (``register_recipes``) with ``host``
    (default: the process's) added to its own, unless ``plugin_recipes`` is False or the plugins
    are still loading (a plugin reading the catalog then gets the file's alone)."""
    path = path or catalog_path()
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise ConfigError(f"The registry file '{path}' does not exist.") from None
    catalog = _load_cached(path, mtime)
    host = (host or ready_host()) if plugin_recipes else None
    if host is None:
        return catalog
    added = {
        name: Recipe.model_validate({"description": r.description, "measured": r.measured, **r.config})
        for name, r in host.recipes.items() if name not in catalog.recipes  # the file's names are kept
    }
    return catalog.model_copy(update={"recipes": {**catalog.recipes, **added}}) if added else catalog


def recipe_plugin(name: str, host: PluginHost | None = None) -> str | None:
    """The plugin that registered recipe ``name``, or None for the catalog file's own."""
    if name in load_catalog(plugin_recipes=False).recipes:
        return None
    recipe = (host or get_host()).recipes.get(name)
    return recipe.plugin if recipe is not None else None


def plugin_recipe_problems(host: PluginHost | None = None) -> list[str]:
    """What is wrong with the recipes plugins registered, as using each would find it: values a
    config refuses, names no plugin registers (`blitz list-plugins --check`)."""
    host = host or get_host()
    catalog = load_catalog(host=host)
    problems = []
    for name, recipe in sorted(host.recipes.items()):
        if recipe_plugin(name, host) is None:
            continue  # the catalog's own recipe of that name is the one used
        try:
            config = validate(dict(recipe.config), {key: f"recipe {name}" for key in recipe.config})
        except ConfigError as exc:
            problems.append(f"Plugin '{recipe.plugin}' recipe '{name}': {exc}")
            continue
        for field, kind in NAME_FIELDS.items():
            if field in recipe.config:
                try:
                    resolve(kind, getattr(config, field), catalog, host)
                except UnknownNameError as exc:
                    problems.append(f"Plugin '{recipe.plugin}' recipe '{name}': {exc}")
    return problems


def check_catalog(catalog: Catalog, host: PluginHost | None = None) -> list[str]:
    """Every problem with the catalog against the installed plugins, as messages naming the key."""
    host = host or get_host()
    problems = []
    for kind in KINDS:
        for name, entry in catalog.entries(kind).items():
            key = f"{kind}.{name}"
            record = host.records.get(entry.plugin)
            if record is None or not record.loaded:
                problems.append(f"'{key}': plugin '{entry.plugin}' is not installed or failed to load")
                continue
            try:
                resolved = host.registries[kind].get(entry.component or name)
            except UnknownNameError as exc:
                problems.append(f"'{key}': {exc}")
                continue
            if resolved.plugin != entry.plugin:
                problems.append(
                    f"'{key}': '{resolved.name}' is provided by plugin '{resolved.plugin}', "
                    f"not '{entry.plugin}'"
                )
    for name, recipe in catalog.recipes.items():
        for field, kind in NAME_FIELDS.items():
            value = (recipe.model_extra or {}).get(field)
            if value is None:
                continue
            try:
                resolve(kind, value, catalog, host)
            except UnknownNameError as exc:
                problems.append(f"'recipes.{name}.{field}': {exc}")
    return problems


@dataclass(frozen=True)
class Resolved:
    """A name the user gave, resolved to a registry entry plus catalog defaults."""

    name: str
    entry: Entry
    defaults: dict[str, Any]
    description: str

    def named(self, what: str) -> str:
        """``Model 'x' of plugin 'p'``: how messages name a component, whose bugs are its plugin's."""
        return f"{what} '{self.name}' of plugin '{self.entry.plugin}'"


def _aliased(name: str, alias: Any, registry: Any) -> Entry:
    """The component a catalog entry names, checked against the plugin it says provides it."""
    component = alias.component or name
    try:
        entry = registry.get(component)
    except UnknownNameError:
        raise ConfigError(
            f"The registry file '{catalog_path()}' maps {registry.kind} '{name}' to '{component}', which no loaded "
            f"plugin registers (plugin '{alias.plugin}' is missing, failed to load or lacks it; see "
            "'blitz list-plugins'): fix the entry or install the plugin."
        ) from None
    if alias.plugin and entry.plugin != alias.plugin:
        raise ConfigError(
            f"The registry file '{catalog_path()}' says {registry.kind} '{name}' comes from plugin '{alias.plugin}', "
            f"but plugin '{entry.plugin}' registers '{component}': fix the entry's plugin."
        )
    return entry


def alias_problem(name: str, alias: Any, registry: Any) -> str | None:
    """What is wrong with a catalog entry (see ``_aliased``), or None."""
    try:
        _aliased(name, alias, registry)
    except ConfigError as exc:
        return str(exc)
    return None


def resolve(kind: str, name: str, catalog: Catalog | None = None, host: PluginHost | None = None) -> Resolved:
    """Resolve a user-facing name: a catalog alias first, then the plugin registries."""
    catalog = catalog or load_catalog(host=host)
    host = host or get_host()
    registry = host.registries[kind]
    alias = catalog.entries(kind).get(name)
    if alias is not None:
        entry = _aliased(name, alias, registry)
        return Resolved(name, entry, dict(alias.defaults), alias.description or entry.description)
    try:
        entry = registry.get(name)
    except UnknownNameError as exc:
        known = set(exc.known) | set(catalog.entries(kind))
        error = UnknownNameError(
            exc.kind, name, known, registry.list_command, broken=host.failed(), skipped=host.skipped(),
            unmatched=host.unmatched_allowed,
        )
        error.suggest(exc.suggested)
        raise error from None
    return Resolved(name, entry, {}, entry.description)
