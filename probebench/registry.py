"""The plugin manager and the name -> class lookup of every component kind.

Start-up order (as pytest does it): the built-in modules listed in
``registry.toml`` ``[plugins] builtin``, then third-party modules from the
``probebench`` entry-point group (skipped when
``PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD=1``), then ``check_pending()`` so a
misspelt hook fails at once (and a ``register_<kind>s`` function without
``@hookimpl``, which pluggy would skip, is an error too). Then, plugin by
plugin, every ``register_<kind>s`` hook is called through pluggy and its
classes indexed by name; a name registered twice is an error naming both
plugins.

The hooks are called one plugin at a time (``pm.subset_hook_caller``, which
keeps pluggy's hook-call machinery: argument checks, tracing, call
monitoring, ordering among one plugin's implementations) rather than once for
all plugins, because one call returns a flat list that cannot say which plugin
brought which class, and every error and ``probebench plugins`` must name it.
Which plugins implement a hook is read from the hook's ``get_hookimpls()``.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import os
import re
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from probebench import hookspecs
from probebench.errors import PluginError, UserError, suggest
from probebench.kinds import KINDS, REQUIRED

ENTRY_POINT_GROUP = "probebench"
_CREATING: ContextVar[Registry | None] = ContextVar("probebench_creating_registry", default=None)


def creating_registry() -> Registry | None:
    """The registry whose ``create`` is constructing the calling component, else None.

    A component that wraps another by name (the ``checkpoint`` classifier
    building ``arch = "cnn"``) looks it up here in its constructor, so it sees
    the same plugins as the suite that named it."""
    return _CREATING.get()


@dataclass
class PluginInfo:
    """One registered plugin: a module, where it came from, what it registers."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool
    components: dict[str, list[str]] = field(default_factory=dict)
    hooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """What `plugins --json` prints and run.json records about this plugin."""
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "registers": self.components,
        }

    @property
    def origin(self) -> str:
        """How errors name this plugin: its module and the distribution that brought it."""
        if self.builtin:
            return f"built-in plugin {self.name!r} ({self.distribution} {self.version})"
        if self.distribution == "in-process":
            return f"in-process plugin {self.name!r}"
        return f"plugin {self.name!r} ({self.module}) from distribution {self.distribution} {self.version}"


@dataclass
class Entry:
    kind: str
    name: str
    cls: type[Any]
    plugin: PluginInfo


class Registry:
    """Every component class by kind and name, with the plugins that brought them."""

    def __init__(self, builtin: Iterable[str], *, autoload: bool | None = None, disabled: Iterable[str] = ()) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        disabled_env = os.environ.get("PROBEBENCH_DISABLE_PLUGINS", "")
        self.disabled = set(disabled) | {d.strip() for d in disabled_env.split(",") if d.strip()}
        self.skipped: set[str] = set()  # the names in ``disabled`` that matched a plugin
        if autoload is None:
            autoload = os.environ.get("PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "yes")
        for module_name in builtin:
            self._register_builtin(module_name)
        if autoload:
            self._register_entry_points()
        self._check_hooks()
        for info in self.plugins.values():
            self._index(info)

    def add_plugin(self, plugin: object, name: str | None = None) -> PluginInfo:
        """Register an in-process plugin (a module or any object with hook
        implementations) after start-up, as tests and notebooks do."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        info = PluginInfo(name, name, "in-process", "-", builtin=False)
        self._register(plugin, info)
        self._check_hooks()
        self._index(info)
        return info

    # -- loading -----------------------------------------------------------
    def _register_builtin(self, module_name: str) -> None:
        short = module_name.rsplit(".", 1)[-1] if module_name.startswith("probebench.plugins.") else module_name
        matched = self.disabled & {module_name, short}
        if matched:
            self.skipped |= matched
            return
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginError(
                f"built-in plugin module {module_name!r} (probebench) failed to import: "
                f"{_one_line(exc)}; check registry.toml [plugins] builtin"
            ) from None
        from probebench import __version__

        info = PluginInfo(module_name, module_name, "probebench", __version__, builtin=True)
        self._register(module, info)

    def _register_entry_points(self) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "unknown distribution"
            version = ep.dist.version if ep.dist else "?"
            matched = self.disabled & {ep.name, dist}
            if matched:
                self.skipped |= matched
                continue
            info = PluginInfo(ep.name, ep.value, dist, version, builtin=False)
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginError(f"{info.origin} failed to import: {_one_line(exc)}; {_fix(info)}") from None
            self._register(module, info)

    def _register(self, module: object, info: PluginInfo) -> None:
        if info.name in self.plugins:
            other = self.plugins[info.name]
            raise PluginError(
                f"two plugins are named {info.name!r}: {other.module} ({other.distribution}) "
                f"and {info.module} ({info.distribution}); rename one"
            )
        try:
            self.pm.register(module, name=info.name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(f"{info.origin} cannot register: {_one_line(exc)}; {_fix(info)}") from None
        self.plugins[info.name] = info

    def _check_hooks(self) -> None:
        """A misspelt hook fails at start-up (pluggy's ``check_pending``), named
        with its plugin's distribution and the closest real hook."""
        hooks = [n for n in vars(hookspecs) if n.startswith("register_")]

        def unknown_hook(where: str, name: str) -> PluginError:
            return PluginError(
                f"{where} implements an unknown hook {name!r}{suggest(name, hooks, n=1)}; "
                f"the hooks are listed in docs/plugins.md"
            )

        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            plugin_name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
            info = self.plugins.get(plugin_name)
            unknown = next((h.name for h in self.pm.get_hookcallers(exc.plugin) or () if not h.has_spec()), "?")
            raise unknown_hook(info.origin if info else f"plugin {plugin_name!r}", unknown) from None
        # pluggy skips a function without @hookimpl: under a hook's name it would register nothing
        # without a word, and a near-miss of a hook name is a typo
        for info in self.plugins.values():
            plugin = self.pm.get_plugin(info.name)
            for attr in dir(plugin):
                if not attr.startswith("register_") or not callable(getattr(plugin, attr)):
                    continue
                if self.pm.parse_hookimpl_opts(plugin, attr) is not None:
                    continue
                if attr in hooks:
                    raise PluginError(
                        f"{info.origin} defines {attr}() without @hookimpl, so pluggy would not call it; "
                        f"define it with @hookimpl (from probebench.hookspecs import hookimpl)"
                    )
                if difflib.get_close_matches(attr, hooks, n=1, cutoff=0.85):
                    raise unknown_hook(info.origin, attr)
        # _index calls one plugin's hooks through pm.subset_hook_caller, which leaves out only the plugins
        # that have an attribute of the hook's name: an implementation under another name (specname) would
        # be called on behalf of every plugin
        for hook in hooks:
            for impl in getattr(self.pm.hook, hook).get_hookimpls():
                if not hasattr(impl.plugin, hook):
                    raise PluginError(
                        f"{self.plugins[impl.plugin_name].origin} implements {hook} as "
                        f"{impl.function.__name__}() (specname); name the function {hook}"
                    )

    def _index(self, info: PluginInfo) -> None:
        """Call each ``register_<kind>s`` hook that ``info``'s plugin implements,
        through pluggy with the other plugins left out, and index what it returns."""
        plugin = self.pm.get_plugin(info.name)
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        for kind in KINDS:
            hook = f"register_{kind}s"
            if not any(impl.plugin is plugin for impl in getattr(self.pm.hook, hook).get_hookimpls()):
                continue
            info.hooks.append(hook)
            try:
                returned = self.pm.subset_hook_caller(hook, others)()
            except Exception as exc:
                raise PluginError(f"{info.origin}: {hook}() raised {_one_line(exc)}; {_fix(info)}") from None
            for classes in returned:  # one list per implementation (pluggy drops a None)
                if not isinstance(classes, (list, tuple)):
                    got = (
                        f"the class {classes.__name__}; return [{classes.__name__}]"
                        if isinstance(classes, type)
                        else type(classes).__name__
                    )
                    raise PluginError(f"{info.origin}: {hook}() must return a list of classes, got {got}")
                for cls in classes:
                    self._add(kind, cls, info)

    def _add(self, kind: str, cls: type[Any], info: PluginInfo) -> None:
        where = info.origin
        if not isinstance(cls, type):
            raise PluginError(
                f"{where}: register_{kind}s() must return classes, not {type(cls).__name__} objects; "
                f"return [{type(cls).__name__}] instead of [{type(cls).__name__}()]"
            )
        for attr in REQUIRED[kind]:
            if not any(attr in vars(klass) for klass in cls.__mro__[:-1]):
                raise PluginError(f"{where}: {kind} class {cls.__qualname__} has no {attr!r}; see docs/plugins.md")
        name = cls.name
        if not isinstance(name, str) or not name or any(c in name for c in ": \t\n*?["):
            raise PluginError(
                f"{where}: {kind} class {cls.__qualname__} has name {name!r}; a name is a non-empty "
                f"kebab-case string without ':', spaces or wildcards"
            )
        if name in self.entries[kind]:
            other = self.entries[kind][name].plugin
            raise PluginError(
                f"{kind} {name!r} is registered twice: by plugin {other.name!r} ({other.distribution}) "
                f"and by plugin {info.name!r} ({info.distribution}); disable one with --disable-plugin"
            )
        self.entries[kind][name] = Entry(kind, name, cls, info)
        info.components.setdefault(kind, []).append(name)

    # -- lookup ------------------------------------------------------------
    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Registered names of ``kind`` matching an fnmatch ``pattern``, sorted."""
        self._check_kind(kind)
        return sorted(n for n in self.entries[kind] if fnmatch.fnmatchcase(n, pattern))

    def entry(self, kind: str, name: str) -> Entry:
        self._check_kind(kind)
        base = name.split(":", 1)[0]
        try:
            return self.entries[kind][base]
        except KeyError:
            raise UserError(
                f"unknown {kind} {base!r}{suggest(base, self.entries[kind])}; `probebench ls {kind}s` lists them"
            ) from None

    def get(self, kind: str, name: str) -> type[Any]:
        """The class registered as ``name`` (a ``name:variant`` suffix is ignored)."""
        return self.entry(kind, name).cls

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
        """An instance of ``name`` with ``options``; a ``name:variant`` passes ``variant``."""
        cls = self.get(kind, name)
        options = dict(options or {})
        if ":" in name:
            options["variant"] = name.split(":", 1)[1]
        check_options(kind, name, cls, options)
        token = _CREATING.set(self)
        try:
            return cls(**options)
        finally:
            _CREATING.reset(token)

    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            raise UserError(f"unknown kind {kind!r}{suggest(kind, KINDS)}; kinds are {', '.join(KINDS)}")


def _one_line(exc: BaseException) -> str:
    """An exception as one line: errors are printed as a single line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _fix(info: PluginInfo) -> str:
    if info.builtin:
        return "check registry.toml [plugins] builtin"
    return f"fix or uninstall {info.distribution}, or skip it with --disable-plugin {info.name}"


def options_of(cls: type[Any]) -> dict[str, inspect.Parameter]:
    """A component's options: the keyword parameters of its constructor (none
    when the class defines no constructor of its own: ``object.__init__``
    takes nothing, whatever its signature says)."""
    if cls.__init__ is object.__init__:
        return {}
    params = inspect.signature(cls.__init__).parameters
    return {n: p for n, p in params.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _takes_any(cls: type[Any]) -> bool:
    """Whether the constructor has ``**kwargs`` (its documented ``option_help`` keys are then its other options)."""
    if cls.__init__ is object.__init__:
        return False
    return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())


_RANGE = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")


def in_range(bounds: str, value: float) -> bool:
    """Whether ``value`` lies in the interval ``bounds``, written as in
    mathematics: ``"[1, inf)"``, ``"(0, inf)"``, ``"[0, 1)"``, ``"[1, 5]"``."""
    match = _RANGE.match(bounds)
    if not match:
        raise ValueError(f"{bounds!r} is not an interval such as '[0, 1)' or '(0, inf)'")
    opening, low, high, closing = match.groups()
    lo, hi = float(low), float(high)
    above = value >= lo if opening == "[" else value > lo
    below = value <= hi if closing == "]" else value < hi
    return above and below


_SIMPLE_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "str": str,
    "bool": bool,
    "list": list,
    "dict": dict,
}


def check_options(kind: str, name: str, cls: type[Any], options: dict[str, Any]) -> None:
    """Unknown option names, options of the wrong simple type, and numbers
    outside the class's declared ``option_ranges`` are user errors."""
    accepted = options_of(cls)
    documented = set(getattr(cls, "option_help", {}) or {}) if _takes_any(cls) else set()
    ranges = getattr(cls, "option_ranges", {}) or {}
    for key, value in options.items():
        if key not in accepted and key not in documented:
            valid = ", ".join([*accepted, *sorted(documented - set(accepted))]) or "none"
            raise UserError(f"{kind} {name!r} has no option {key!r}{suggest(key, accepted)}; its options: {valid}")
        annotation = accepted[key].annotation if key in accepted else None
        if not _type_ok(annotation, value):
            raise UserError(
                f"{kind} {name!r} option {key!r} must be {annotation}, got {type(value).__name__} {value!r}"
            )
        bounds = ranges.get(key)
        if bounds is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        try:
            ok = in_range(bounds, value)
        except ValueError as exc:
            raise PluginError(f"{kind} {name!r}: option_ranges[{key!r}]: {exc}") from None
        if not ok:
            raise UserError(f"{kind} {name!r} option {key!r} must lie in {bounds}, got {value!r}")


def _type_ok(annotation: object, value: object) -> bool:
    """Check simple string annotations (``int``, ``float | None``, ...); others pass."""
    if not isinstance(annotation, str):
        return True
    names = annotation.replace(" ", "").split("|")
    if value is None:
        return "None" in names or not all(n in _SIMPLE_TYPES or n == "None" for n in names)
    for n in names:
        if n not in _SIMPLE_TYPES:
            if n != "None":
                return True  # a type we do not check
            continue
        if isinstance(value, bool) and n != "bool":
            continue  # True is an int to Python, not to a suite author
        if isinstance(value, _SIMPLE_TYPES[n]):
            return True
    return False
