"""The plugin manager and the name -> class lookup of every component kind.

Start-up order (as pytest does it): the built-in modules listed in
``registry.toml`` ``[plugins] builtin``, then third-party modules from the
``probebench`` entry-point group (skipped when
``PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD=1``), then ``check_pending()`` so a
misspelt hook fails at once. Every ``register_<kind>s`` hook of every plugin is
then called and its classes indexed by name; a name registered twice is an
error naming both plugins.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import os
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from harness import hookspecs
from harness.errors import PluginError, UserError, suggest
from harness.kinds import KINDS, REQUIRED

ENTRY_POINT_GROUP = "probebench"


@dataclass
class PluginInfo:
    """One registered plugin: a module, where it came from, what it registers."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool
    components: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Entry:
    kind: str
    name: str
    cls: type
    plugin: PluginInfo


class Registry:
    """Every component class by kind and name, with the plugins that brought them."""

    def __init__(self, builtin: list[str], *, autoload: bool | None = None, disabled: list[str] = ()):
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        disabled_env = os.environ.get("PROBEBENCH_DISABLE_PLUGINS", "")
        self.disabled = set(disabled) | {d.strip() for d in disabled_env.split(",") if d.strip()}
        if autoload is None:
            autoload = os.environ.get("PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "yes")
        for module_name in builtin:
            self._register_builtin(module_name)
        if autoload:
            self._register_entry_points()
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin_name!r} implements an unknown hook: {exc}") from None
        for info in self.plugins.values():
            self._index(info)

    # -- loading -----------------------------------------------------------
    def _register_builtin(self, module_name: str) -> None:
        short = module_name.rsplit(".", 1)[-1] if module_name.startswith("plugins.") else module_name
        if module_name in self.disabled or short in self.disabled:
            return
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginError(
                f"built-in plugin module {module_name!r} (probebench) failed to import: "
                f"{type(exc).__name__}: {exc}; check registry.toml [plugins] builtin"
            ) from None
        from harness import __version__

        info = PluginInfo(module_name, module_name, "probebench", __version__, builtin=True)
        self._register(module, info)

    def _register_entry_points(self) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "unknown distribution"
            version = ep.dist.version if ep.dist else "?"
            if ep.name in self.disabled or (ep.dist and ep.dist.name in self.disabled):
                continue
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} from distribution {dist} {version} failed to import "
                    f"({ep.value}): {type(exc).__name__}: {exc}; fix or uninstall it, "
                    f"or skip it with --disable-plugin {ep.name}"
                ) from None
            self._register(module, PluginInfo(ep.name, ep.value, dist, version, builtin=False))

    def _register(self, module, info: PluginInfo) -> None:
        if info.name in self.plugins:
            other = self.plugins[info.name]
            raise PluginError(
                f"two plugins are named {info.name!r}: {other.module} ({other.distribution}) "
                f"and {info.module} ({info.distribution}); rename one"
            )
        try:
            self.pm.register(module, name=info.name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(f"plugin {info.name!r} from {info.distribution} cannot register: {exc}") from None
        self.plugins[info.name] = info

    def _index(self, info: PluginInfo) -> None:
        module = self.pm.get_plugin(info.name)
        for kind in KINDS:
            impl = getattr(module, f"register_{kind}s", None)
            if impl is None:
                continue
            try:
                classes = list(impl() or [])
            except Exception as exc:
                raise PluginError(
                    f"plugin {info.name!r} from {info.distribution}: register_{kind}s() raised "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            for cls in classes:
                self._add(kind, cls, info)

    def _add(self, kind: str, cls: type, info: PluginInfo) -> None:
        where = f"plugin {info.name!r} from {info.distribution}"
        for attr in REQUIRED[kind]:
            if not any(attr in vars(klass) for klass in cls.__mro__[:-1]):
                raise PluginError(f"{where}: {kind} class {cls.__qualname__} has no {attr!r}; see docs/plugins.md")
        name = cls.name
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
                f"unknown {kind} {base!r}{suggest(base, self.entries[kind])}; "
                f"`probebench ls {kind}s` lists them"
            ) from None

    def get(self, kind: str, name: str) -> type:
        """The class registered as ``name`` (a ``name:variant`` suffix is ignored)."""
        return self.entry(kind, name).cls

    def create(self, kind: str, name: str, options: dict | None = None):
        """An instance of ``name`` with ``options``; a ``name:variant`` passes ``variant``."""
        cls = self.get(kind, name)
        options = dict(options or {})
        if ":" in name:
            options["variant"] = name.split(":", 1)[1]
        check_options(kind, name, cls, options)
        return cls(**options)

    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            raise UserError(f"unknown kind {kind!r}{suggest(kind, KINDS)}; kinds are {', '.join(KINDS)}")


def options_of(cls: type) -> dict[str, inspect.Parameter]:
    """A component's options: the keyword parameters of its constructor."""
    params = inspect.signature(cls.__init__).parameters
    return {
        n: p
        for n, p in params.items()
        if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


_SIMPLE_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "list": list, "dict": dict}


def check_options(kind: str, name: str, cls: type, options: dict) -> None:
    """Unknown option names and options of the wrong simple type are user errors."""
    accepted = options_of(cls)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    for key, value in options.items():
        if key not in accepted:
            if takes_any:
                continue
            valid = ", ".join(accepted) or "none"
            raise UserError(
                f"{kind} {name!r} has no option {key!r}{suggest(key, accepted)}; its options: {valid}"
            )
        annotation = accepted[key].annotation
        if not _type_ok(annotation, value):
            raise UserError(
                f"{kind} {name!r} option {key!r} must be {annotation}, got {type(value).__name__} {value!r}"
            )


def _type_ok(annotation, value) -> bool:
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
