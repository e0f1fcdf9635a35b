"""Finding and loading plugins, once per process, without letting one broken plugin stop blitz.

Every plugin, blitz's built-ins included, is a module named by an entry point in the ``blitz``
group. Built-ins load first, then third-party plugins in name order; that order decides which
registration wins when two plugins register the same name (the first one is kept, and the
second is reported as an error of its plugin). ``BLITZ_LOAD_PLUGINS`` limits which third-party
plugins load: unset loads all, an empty string loads none, ``a,b`` loads only those.

A plugin can also be a plain ``.py`` file in a folder named by ``BLITZ_PLUGINS_DIR`` (or
``blitz --plugins-dir``), loaded without being installed: the way to develop one, as
datasette's ``--plugins-dir``. Such files count as third-party plugins, named after the file.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.metadata
import importlib.util
import os
import re
import sys
import sysconfig
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from blitz import hookspecs
from blitz.errors import PluginError, UsageError, closest_name
from blitz.kinds import KINDS
from blitz.registry import Entry, Registry
from blitz.stopping import ctrl_c_deferred

ENTRY_POINT_GROUP = "blitz"
_VALID_RECIPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
LOAD_PLUGINS_ENV = "BLITZ_LOAD_PLUGINS"
PLUGINS_DIR_ENV = "BLITZ_PLUGINS_DIR"
BUILTIN_DISTRIBUTION = "blitz-train"  # pyproject.toml's name


@dataclass(frozen=True)
class PluginRecipe:
    """A recipe a plugin registered: its config keys, as a registry.toml recipe table holds them."""

    name: str
    plugin: str
    description: str
    measured: str
    config: dict[str, Any]


@dataclass
class PluginRecord:
    """What `blitz list-plugins` shows about one plugin."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool
    loaded: bool = False
    hooks: list[str] = field(default_factory=list)
    registers: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None
    duplicate_of: str | None = None  # a second plugin of an already taken name: the first's module
    load_seconds: float | None = None  # importing and registering it (None: not tried)

    def add_load_time(self, seconds: float) -> None:
        """Count time spent importing it or in its register hooks."""
        self.load_seconds = round((self.load_seconds or 0.0) + seconds, 3)

    @property
    def origin(self) -> str:
        """Where it comes from: ``distribution version`` (``folder PATH`` for a plugins-dir file)."""
        return " ".join(filter(None, (self.distribution, self.version)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "loaded": self.loaded,
            "hooks": self.hooks,
            "registers": self.registers,
            "errors": self.errors,
            "skipped": self.skipped,
            "duplicate_of": self.duplicate_of,
            "load_seconds": self.load_seconds,
        }


@dataclass(frozen=True)
class PluginSource:
    """A module to load as a plugin: from an entry point, or given directly (tests, embedding)."""

    name: str
    load: Callable[[], ModuleType | object]
    module: str
    distribution: str
    version: str

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


def _hook_names() -> list[str]:
    """The names of blitz's hooks (``register_models``, ``on_epoch_end``...)."""
    return [name for name in dir(hookspecs) if name.startswith(("register_", "on_"))]


def _unmarked_hooks(plugin: object, marked: Iterable[str]) -> list[str]:
    """Functions of a plugin named as hooks but not marked @hookimpl: pluggy never calls them."""
    specs = set(_hook_names())
    return sorted(name for name in dir(plugin) if name in specs and name not in marked and callable(getattr(plugin, name)))


def _takes_register(impl: pluggy.HookImpl, hook: str, record: PluginRecord) -> bool:
    """Whether a register hook takes ``register``; one without it (pluggy calls it with none)
    could register nothing: said in the plugin's record, not called."""
    if impl.argnames:
        return True
    record.errors.append(f"{hook} takes no 'register' argument, so it registers nothing: "
                         f"write def {hook}(register): ... and call register(...) in it")
    return False


def _registers_nothing(plugin: object, value: str = "") -> str:
    """Why a plugin that loaded implements no hook, as precisely as can be told; ``value`` is
    what its entry point names (``module`` or ``module:attribute``)."""
    unmarked = _unmarked_hooks(plugin, ())
    if unmarked:
        return (f"registers nothing: {', '.join(unmarked)} lack(s) the @hookimpl marker "
                "(from blitz import hookimpl)")
    if ":" in value and not isinstance(plugin, ModuleType):  # `mod:register_models`: pluggy sees one function
        module = value.split(":")[0].strip()
        return (f"registers nothing: its entry point names '{value}', a {type(plugin).__name__}, not a module: "
                f"name the module that holds the hooks, '{module}'")
    return ("registers nothing: no function in it is marked @hookimpl (the entry point must name the "
            "module holding the hooks, not a function or another module)")


def discover() -> list[PluginSource]:
    """The installed plugins and those in ``BLITZ_PLUGINS_DIR``: built-ins first, then the rest
    by name (an installed plugin before a file of the same name).

    Two entry points with one name are both returned (the host loads the first and reports the
    second), so a package cannot silently replace a built-in plugin by reusing its name; the same
    plugin name for the same module counts once, whichever distributions declare it (one on
    ``sys.path`` twice, or stale metadata of an earlier install: a ``blitz.egg-info`` left in a
    checkout from before the distribution was renamed ``blitz-train``), the built-in's kept.
    """
    sources: dict[tuple[str, str], PluginSource] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        source = PluginSource(
            name=ep.name,
            load=ep.load,
            module=ep.value,
            distribution=dist.name if dist else "unknown",
            version=dist.version if dist else "unknown",
        )
        seen = sources.get((source.name, source.module))
        if seen is None or (source.builtin and not seen.builtin):
            sources[(source.name, source.module)] = source
    found = [*sources.values(), *folder_sources()]
    return sorted(found, key=lambda s: (not s.builtin, s.name))  # stable: files after entry points


def misplaced_entry_points() -> list[str]:
    """Entry points declared in a group named like blitz's but not it (``blitz.plugins``,
    ``blitz_plugins``, ``blits``): blitz never sees them, so the plugin is silently missing."""
    found: dict[tuple[str, str], list[str]] = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            group = ep.group.lower().replace("-", "_")
            if ep.group == ENTRY_POINT_GROUP or not (  # blitz.plugins, blitz_hooks; blits, blitz1 (not blitzdb)
                group.startswith((f"{ENTRY_POINT_GROUP}.", f"{ENTRY_POINT_GROUP}_"))
                or difflib.SequenceMatcher(None, group, ENTRY_POINT_GROUP).ratio() >= 0.8
            ):
                continue
            names = found.setdefault((dist.name, ep.group), [])
            if ep.name not in names:  # one distribution seen twice on sys.path
                names.append(ep.name)
    return [
        f"distribution '{dist}' declares entry point(s) {', '.join(repr(n) for n in names)} in the group '{group}', "
        f"which blitz does not read: a plugin's entry points go in the group '{ENTRY_POINT_GROUP}' "
        f"([project.entry-points.{ENTRY_POINT_GROUP}] in pyproject.toml)"
        for (dist, group), names in sorted(found.items())
    ]


def folder_sources() -> list[PluginSource]:
    """A plugin per ``*.py`` file in the folders of ``BLITZ_PLUGINS_DIR`` (several are separated
    by ``os.pathsep``; each counts once), named after the file. Files starting with ``_`` (helpers
    the plugins import) or ``.`` (hidden, editor lock files) are not plugins."""
    sources = []
    seen: set[Path] = set()
    for folder in filter(None, os.environ.get(PLUGINS_DIR_ENV, "").split(os.pathsep)):
        path = Path(folder).expanduser().absolute()
        if not path.is_dir():
            raise UsageError(
                f"{PLUGINS_DIR_ENV} (or --plugins-dir) names '{folder}', which is not a folder: "
                "point it at the folder that holds your plugin .py files."
            )
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        for file in sorted(path.glob("*.py")):
            if not file.name.startswith(("_", ".")) and file.is_file():
                load = functools.partial(_load_file, file.resolve())
                sources.append(PluginSource(file.stem, load, str(file), f"folder {path}", ""))
    return sources


def _load_file(path: Path) -> ModuleType:
    """Import one plugin file under a prefixed module name (a file named ``json.py`` must not
    shadow the standard library); it is in ``sys.modules`` so what it defines can be pickled."""
    name = f"blitz_plugins_dir_{path.stem}"
    if str(path.parent) not in sys.path:  # so that it can import the helper modules beside it
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None  # a .py path always has one
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _allowed_third_party() -> set[str] | None:
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _short_error(exc: BaseException, module: str | None = None) -> str:
    """``Type: message (file:line)``, one line, at the plugin's own line where the traceback has one."""
    if isinstance(exc, SyntaxError) and exc.filename:  # the plugin's own line, not importlib's
        return f"{type(exc).__name__}: {exc.msg} ({exc.filename.rsplit('/', 1)[-1]}:{exc.lineno})"
    if isinstance(exc, pluggy.PluginValidationError):  # three lines, pointing into pluggy: one, at the hook
        return _validation_error(exc)
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    frame = _plugin_frame(traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else [], module)
    where = f" ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame else ""
    if isinstance(exc, ModuleNotFoundError) and module and exc.name == module.split(":")[0]:
        where = " (the module its entry point names: a misspelling?)"
    return f"{type(exc).__name__}: {first}{where}"


# Frames never shown as the plugin's line: Python's own modules and blitz's plugin host.
_NOT_THE_PLUGINS = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"], str(Path(__file__).parent))


def _plugin_frame(frames: list[traceback.FrameSummary], module: str | None) -> traceback.FrameSummary | None:
    """The frame to show: the last in the plugin's own package (its module's top-level name), else
    the last outside Python's own modules (importlib, the frozen ones); None if there is none:
    "(__init__.py:204)" in importlib.metadata reads like the plugin's own file."""
    top = module.split(":")[0].split(".")[0] if module else None
    if top:
        for frame in reversed(frames):
            parts = Path(frame.filename).parts
            installed = [i for i, part in enumerate(parts) if part in ("site-packages", "dist-packages")]
            # installed: the folder right after site-packages must be it (a venv inside a folder
            # of the plugin's name holds other libraries); elsewhere, any folder of that name
            mine = parts[installed[-1] + 1:][:1] if installed else parts
            if top in mine or Path(frame.filename).stem == top:
                return frame
    for frame in reversed(frames):
        if not frame.filename.startswith("<") and not frame.filename.startswith(_NOT_THE_PLUGINS):
            return frame
    return None


def _validation_error(exc: pluggy.PluginValidationError) -> str:
    """pluggy's refusal of a hook implementation (e.g. an argument the hook does not have) in one
    line, with the implementation's file and line."""
    found = re.search(r"for hook '(\w+)'", str(exc))
    function = getattr(exc.plugin, found.group(1), None) if found else None
    code = getattr(function, "__code__", None)
    where = f" ({code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno})" if code else ""
    lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
    return f"{'; '.join(lines) or exc}{where}"


class PluginHost:
    """The loaded plugins and the registries they filled."""

    def __init__(self, sources: Iterable[PluginSource]) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.sources = list(sources)
        self.records: dict[str, PluginRecord] = {}
        self.registries = {name: Registry(kind.noun, kind.list_command) for name, kind in KINDS.items()}
        self._broken_lifecycle: set[tuple[str, str]] = set()
        allowed = _allowed_third_party()
        # Names in BLITZ_LOAD_PLUGINS that no plugin has: a misspelling would load nothing, silently
        self.unmatched_allowed = sorted(allowed - {s.name for s in self.sources}) if allowed else []
        # A plugin's print() while it loads goes to stderr: stdout may be --json for a program
        with _stdout_to_stderr():
            for source in self.sources:
                self._load(source, allowed)
            self._reject_unknown_hooks()
            for kind in KINDS:
                self._collect(kind)
            self.recipes: dict[str, PluginRecipe] = {}
            self._collect_recipes()
        self._reject_catalog_clashes()

    def _load(self, source: PluginSource, allowed: set[str] | None) -> None:
        if source.name in self.records:
            # A row of its own (the first plugin's row stays as it is), named so it cannot clash.
            first = self.records[source.name]
            self.records[f"{source.name} [{source.module}]"] = PluginRecord(
                name=source.name, module=source.module, distribution=source.distribution,
                version=source.version, builtin=source.builtin, duplicate_of=first.module,
                errors=[
                    f"not loaded: the plugin name '{source.name}' is taken by {first.module} from "
                    f"{first.origin}; plugin names must be unique, so rename this one"
                ],
            )
            return
        record = PluginRecord(
            name=source.name,
            module=source.module,
            distribution=source.distribution,
            version=source.version,
            builtin=source.builtin,
        )
        self.records[source.name] = record
        if not source.builtin and allowed is not None and source.name not in allowed:
            record.skipped = f"not in {LOAD_PLUGINS_ENV}"
            return
        started = time.perf_counter()
        try:
            plugin = source.load()
            self.pm.register(plugin, name=source.name)
        except (Exception, SystemExit) as exc:  # a broken plugin must never stop the CLI (sys.exit included)
            record.errors.append(f"failed to load: {_short_error(exc, source.module)}")
            return
        finally:  # every command that loads plugins waits for this: a slow import shows in list-plugins
            record.add_load_time(time.perf_counter() - started)
        record.loaded = True
        record.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
        for caller in self.pm.get_hookcallers(plugin) or []:  # said now, not at the run's first epoch
            if any(i.plugin is plugin and (i.hookwrapper or getattr(i, "wrapper", False)) for i in caller.get_hookimpls()):
                record.errors.append(f"{caller.name} is declared a wrapper (hookwrapper/wrapper=True), which blitz's "
                                     "hooks do not support: it is skipped (declare it with plain @hookimpl)")
        if not record.hooks:
            record.errors.append(_registers_nothing(plugin, source.module))
        elif unmarked := _unmarked_hooks(plugin, record.hooks):
            record.errors.append(f"{', '.join(unmarked)} lack(s) the @hookimpl marker (from blitz import hookimpl): "
                                 "not called; its other hooks are")

    def skipped(self) -> list[str]:
        """The plugins BLITZ_LOAD_PLUGINS left out."""
        return sorted({r.name for r in self.records.values() if r.skipped})

    def failed(self) -> list[str]:
        """The plugins that failed to load, or whose register hook raised: either may be missing
        components (a disabled plugin is not a failure, nor a second one of a taken name)."""
        return sorted({r.name for r in self.records.values() if r.duplicate_of is None and r.errors})

    def _reject_unknown_hooks(self) -> None:
        # pm.check_pending() would raise on the first misspelled hook; report each one instead.
        for name in dir(self.pm.hook):
            caller = getattr(self.pm.hook, name)
            if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
                continue
            meant = closest_name(name, _hook_names())
            for impl in caller.get_hookimpls():
                record = self.records[impl.plugin_name]
                record.errors.append(
                    f"implements unknown hook '{name}' (a misspelling{f' of {meant!r}' if meant else ''}?); "
                    "the plugin was not loaded"
                )
                record.loaded = False
                if self.pm.is_registered(impl.plugin):
                    self.pm.unregister(impl.plugin)
        self.pm.check_pending()

    def _collect(self, kind: str) -> None:
        registry = self.registries[kind]
        caller = getattr(self.pm.hook, f"register_{kind}")
        # Called one plugin at a time (in load order) so that one that raises only loses its own.
        for impl in sorted(caller.get_hookimpls(), key=lambda i: list(self.records).index(i.plugin_name)):
            record = self.records[impl.plugin_name]

            def register(name: Any = None, factory: Any = None, *, description: str = "", **metadata: Any) -> None:
                if not isinstance(name, str) or factory is None:  # register(factory), or the two swapped
                    raise TypeError(
                        f"register() takes a name and a factory, register('name', factory, description=...); "
                        f"got {_shown(name)} and {_shown(factory)}"
                    )
                try:
                    registry.add(Entry(name, factory, description, impl.plugin_name, metadata))
                except PluginError as exc:
                    record.errors.append(str(exc))
                    return
                record.registers.setdefault(kind, []).append(name)

            if not _takes_register(impl, f"register_{kind}", record):
                continue
            started = time.perf_counter()
            try:
                impl.function(register=register)
            except (Exception, SystemExit) as exc:  # sys.exit() in a plugin ends only the plugin
                record.errors.append(f"raised in register_{kind}: {_short_error(exc, record.module)}")
            finally:
                record.add_load_time(time.perf_counter() - started)

    def _collect_recipes(self) -> None:
        """``register_recipes``: each plugin's recipes, checked as registry.toml's are (config
        keys only), the first registration of a name kept."""
        from blitz.config import RunConfig

        for impl in sorted(self.pm.hook.register_recipes.get_hookimpls(), key=lambda i: list(self.records).index(i.plugin_name)):
            record = self.records[impl.plugin_name]

            def register(name: Any = None, *, description: Any = None, measured: str = "", **config: Any) -> None:
                problem = None
                if not isinstance(name, str) or not _VALID_RECIPE_NAME.match(name):
                    problem = f"registered an invalid recipe name {name!r}: use letters, digits, '_', '-' or '.'"
                elif not isinstance(description, str) or not description:
                    problem = f"registered recipe '{name}' without a description (description='...')"
                elif unknown := sorted(set(config) - set(RunConfig.model_fields)):
                    close = closest_name(unknown[0], RunConfig.model_fields)
                    problem = (f"registered recipe '{name}' with '{unknown[0]}', which is not a config key"
                               + (f" (did you mean '{close}'?)" if close else ""))
                elif name in self.recipes:
                    first = self.recipes[name].plugin
                    problem = (f"registers recipe '{name}' twice; the first registration is kept" if first == record.name
                               else f"registers recipe '{name}', which plugin '{first}' already registers; the first "
                               "registration is kept")
                if problem:
                    record.errors.append(f"Plugin '{record.name}' {problem}.")
                    return
                self.recipes[name] = PluginRecipe(name, record.name, description, str(measured), config)
                record.registers.setdefault("recipes", []).append(name)

            if not _takes_register(impl, "register_recipes", record):
                continue
            started = time.perf_counter()
            try:
                impl.function(register=register)
            except (Exception, SystemExit) as exc:
                record.errors.append(f"raised in register_recipes: {_short_error(exc, record.module)}")
            finally:
                record.add_load_time(time.perf_counter() - started)

    def _reject_catalog_clashes(self) -> None:
        """A third-party name that registry.toml already gives to another component is refused.

        The catalog's alias wins when a name is resolved, so such a registration could never be
        used; it would only show up in `blitz list` looking like the alias.
        """
        from blitz.catalog import load_catalog
        from blitz.errors import BlitzError

        try:
            catalog = load_catalog(plugin_recipes=False)  # this host's own are what is checked
        except BlitzError:
            return  # a broken catalog is reported where it is used
        for kind, registry in self.registries.items():
            for name, alias in catalog.entries(kind).items():
                if not alias.component or alias.component == name or name not in registry.names():
                    continue
                entry = registry.get(name)
                record = self.records.get(entry.plugin)
                if record is None or record.builtin:
                    continue
                registry.remove(name)
                registry.refused.setdefault(name, []).append(entry.plugin)
                record.registers[kind].remove(name)
                if not record.registers[kind]:  # `blitz list-plugins` would show "models: " and nothing
                    del record.registers[kind]
                record.errors.append(
                    f"Plugin '{record.name}' registers {registry.kind} '{name}', a name registry.toml gives to "
                    f"'{alias.component}'; the catalog's entry is kept: register another name"
                )
        for name in sorted(set(self.recipes) & set(catalog.recipes)):
            record = self.records[self.recipes.pop(name).plugin]
            record.registers["recipes"].remove(name)
            if not record.registers["recipes"]:
                del record.registers["recipes"]
            record.errors.append(
                f"Plugin '{record.name}' registers recipe '{name}', a name registry.toml gives a recipe of its own; "
                "the catalog's is kept: register another name"
            )

    def start_run(self) -> None:
        """Forget lifecycle hooks disabled during an earlier run in this process."""
        self._broken_lifecycle.clear()

    def call_lifecycle(self, hook: str, **kwargs: Any) -> list[str]:
        """Call a lifecycle hook on every plugin; one that raises is disabled and reported.

        Returns the warnings to show, so a logger's bug cannot end hours of training.
        """
        warnings = []
        for impl in _in_call_order(getattr(self.pm.hook, hook).get_hookimpls()):
            key = (impl.plugin_name, hook)
            if key in self._broken_lifecycle:
                continue
            record = self.records.get(impl.plugin_name)
            dist = f" (from {record.distribution})" if record else ""
            if impl.hookwrapper or getattr(impl, "wrapper", False):
                self._broken_lifecycle.add(key)
                warnings.append(
                    f"plugin '{impl.plugin_name}'{dist}: {hook} is declared a wrapper (hookwrapper/wrapper=True), "
                    "which blitz's lifecycle hooks do not support; it is skipped (declare it with plain @hookimpl)"
                )
                continue
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except (Exception, SystemExit) as exc:  # sys.exit() in a hook must not end the run either
                self._broken_lifecycle.add(key)
                warnings.append(
                    f"plugin '{impl.plugin_name}'{dist} raised in {hook}: {_short_error(exc)}; "
                    "it is skipped for the rest of this run"
                )
        return warnings


class _LoadingStdout:
    """``sys.stdout`` while plugins load: their writes go to stderr until loading ends, then to
    stdout again, also through a reference a plugin kept (``OUT = sys.stdout`` at import)."""

    def __init__(self, stdout: Any, stderr: Any) -> None:
        self.stdout, self.stderr, self.loading = stdout, stderr, True

    def _target(self) -> Any:
        return self.stderr if self.loading else self.stdout

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the target's own
        return getattr(self._target(), name)


@contextlib.contextmanager
def _stdout_to_stderr() -> Any:
    proxy = _LoadingStdout(sys.stdout, sys.stderr)
    sys.stdout = proxy
    try:
        yield
    finally:  # whatever a plugin set there: a wrapper of the proxy's stderr would keep stdout on stderr
        proxy.loading = False
        sys.stdout = proxy.stdout


def _shown(value: Any) -> str:
    return "nothing" if value is None else repr(value) if isinstance(value, str) else type(value).__name__


def _in_call_order(impls: list[Any]) -> list[Any]:
    """Hook implementations in load order, ``tryfirst`` ones first and ``trylast`` ones last, as
    pluggy would call them (its list holds trylast first and tryfirst last)."""
    first = [i for i in impls if i.tryfirst]
    last = [i for i in impls if i.trylast]
    return first + [i for i in impls if not (i.tryfirst or i.trylast)] + last


def local_source(plugin: object, name: str) -> PluginSource:
    """A plugin object given in-process (tests, applications embedding blitz)."""
    return PluginSource(name, lambda: plugin, getattr(plugin, "__name__", name), "local", "")


_host: PluginHost | None = None
_loading = False  # the process's host is being built: a plugin's own call must not build another


def get_host() -> PluginHost:
    """The process's plugin host, loading the installed plugins on first use."""
    global _host, _loading
    if _host is None:
        if _loading:
            raise PluginError(
                "A plugin asked for blitz's plugins while they were loading (at import or in a register hook); "
                "ask later, in a factory or a lifecycle hook."
            )
        _loading = True
        try:
            with ctrl_c_deferred():  # a Ctrl-C while torch imports stops the command after it, not inside
                host = PluginHost(discover())
        finally:
            _loading = False
        _host = host
    return _host


def ready_host() -> PluginHost | None:
    """The process's plugin host, or None while it is being built (what plugins register is not
    known yet): for what a plugin may ask while it loads, such as the catalog."""
    return None if _loading else get_host()


def plugin_states() -> dict[str, str]:
    """Each plugin found in this process by name: ``loaded``, ``skipped`` (BLITZ_LOAD_PLUGINS) or ``failed``."""
    return {r.name: "loaded" if r.loaded else "skipped" if r.skipped else "failed"
            for r in get_host().records.values() if r.duplicate_of is None}


def reset_host(host: PluginHost | None = None) -> None:
    """Forget the loaded plugins (or install ``host``), so the next use loads afresh."""
    global _host
    _host = host
