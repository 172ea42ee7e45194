"""Read ``registry.toml``: the built-in plugin list and the named suites.

A suite is parsed into plain dataclasses and validated against the registry,
so a typo fails in one line naming the file, the suite, the key and the fix,
before anything is trained.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probebench.errors import UserError, suggest

if TYPE_CHECKING:
    from probebench.registry import Registry

DEFAULT_SUITE = "mnist-quick"


def default_registry_path() -> Path:
    """``$PROBEBENCH_REGISTRY``, else the repo's registry.toml, else the installed copy."""
    env = os.environ.get("PROBEBENCH_REGISTRY")
    if env:
        return Path(env)
    return project_registry_path()


def project_registry_path() -> Path:
    """The registry.toml probebench ships: beside the source, else the installed copy."""
    beside_source = Path(__file__).resolve().parent.parent / "registry.toml"
    if beside_source.exists():
        return beside_source
    return Path(sys.prefix) / "share" / "probebench" / "registry.toml"


@dataclass(frozen=True)
class ComponentSpec:
    """A component named in a suite: ``name`` (``name:variant`` allowed), its
    options, and the label its results rows carry."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


@dataclass(frozen=True)
class CorruptionSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class AttackSpec(CorruptionSpec):
    """An adversarial attack of the suite's ``attacks`` list: like a
    corruption's spec, but its cells are crafted against the classifier
    (``probebench/pipeline/attack.py``)."""


@dataclass(frozen=True)
class Bootstrap:
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class ActiveSpec:
    """The suite's ``active`` table: an active-learning loop (probebench/pipeline/active.py).

    ``pool`` training images are held out as an unlabelled pool; for ``rounds``
    rounds each strategy (an acquirer) picks or makes ``budget`` images, an
    oracle labels them and the classifier is retrained on the labelled images
    plus everything acquired so far (from scratch unless ``warm_start``).
    ``oracles`` label generated images (a strategy that only picks pool images
    is labelled by ``pool-label``)."""

    rounds: int
    budget: int
    pool: int
    strategies: tuple[ComponentSpec, ...]
    oracles: tuple[ComponentSpec, ...] = (ComponentSpec("ensemble-oracle"),)
    warm_start: bool = False


POOL_ORACLE = "pool-label"  # labels the pool images that non-generating strategies pick


@dataclass(frozen=True)
class Suite:
    name: str
    dataset: ComponentSpec
    classifier: ComponentSpec
    scorers: tuple[ComponentSpec, ...]
    metrics: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    corruptions: tuple[CorruptionSpec, ...] = ()
    clean: bool = True
    bootstrap: Bootstrap = Bootstrap()
    data_root: str | None = None
    batch_size: int = 256
    description: str = ""
    correctors: tuple[ComponentSpec, ...] = ()
    generators: tuple[ComponentSpec, ...] = ()  # flows trained on the training split (probebench/pipeline/generate.py)
    validation: int = 0  # training images held out as a validation split (probebench/pipeline/data.py)
    log: tuple[ComponentSpec, ...] = ()  # loggers that receive the finished run (probebench/loggers.py)
    active: ActiveSpec | None = None  # an active-learning loop (probebench/pipeline/active.py)
    attacks: tuple[AttackSpec, ...] = ()  # adversarial cells against the classifier (probebench/pipeline/attack.py)

    def as_dict(self) -> dict[str, Any]:
        """The suite as resolved, for the run header and cache keys. Without
        ``log``: where a run is logged changes none of its numbers."""
        from dataclasses import asdict

        resolved = asdict(self)
        resolved.pop("log")
        return resolved


@dataclass
class Config:
    path: Path
    builtin: list[str]
    suites: dict[str, dict[str, Any]]


BUILTIN_PACKAGE = "probebench.plugins"
ALLOW_MODULES_ENV = "PROBEBENCH_ALLOW_MODULES"


def allowed_modules(allow: Iterable[str] = ()) -> set[str]:
    """Modules outside ``probebench.plugins`` a registry file may name: ``allow``
    (``--allow-module``) and the comma-separated ``$PROBEBENCH_ALLOW_MODULES``."""
    from_env = os.environ.get(ALLOW_MODULES_ENV, "")
    return {m.strip() for m in [*allow, *from_env.split(",")] if m.strip()}


def check_builtin(path: Path, modules: list[str], allow: Iterable[str] = ()) -> None:
    """A registry file is data, not code: ``[plugins] builtin`` may name only
    modules of the ``probebench.plugins`` package (importing a module runs it),
    unless a module is deliberately allowed."""
    allowed = allowed_modules(allow)
    for module in modules:
        inside = module == BUILTIN_PACKAGE or module.startswith(BUILTIN_PACKAGE + ".")
        if not inside and module not in allowed:
            raise UserError(
                f"{path}: [plugins] builtin names {module!r}, which is not a module of {BUILTIN_PACKAGE}; "
                f"install third-party plugins through the 'probebench' entry-point group (docs/plugins.md), "
                f"or allow this one deliberately with --allow-module {module}"
            )


def load_config(path: Path | str | None = None, allow_modules: Iterable[str] = ()) -> Config:
    """The registry file at ``path`` (default: ``default_registry_path()``);
    ``allow_modules`` are plugin modules outside ``probebench.plugins`` that
    its ``[plugins] builtin`` may name (see ``check_builtin``)."""
    path = Path(path) if path else default_registry_path()
    if not path.is_file():
        raise UserError(f"registry file {path} not found; pass --registry PATH or set PROBEBENCH_REGISTRY")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: malformed TOML: {exc}") from None
    unknown = set(data) - {"plugins", "suite"}
    if unknown:
        key = sorted(unknown)[0]
        raise UserError(f"{path}: unknown top-level table [{key}]{suggest(key, ['plugins', 'suite'])}")
    plugins = data.get("plugins", {})
    builtin = plugins.get("builtin", [])
    if "plugins" not in data:  # a file of one's own suites: the built-ins probebench ships
        shipped = project_registry_path()
        if shipped.is_file() and shipped.resolve() != path.resolve():
            builtin = load_config(shipped).builtin
    if not isinstance(builtin, list) or not all(isinstance(m, str) for m in builtin):
        raise UserError(f"{path}: [plugins] builtin must be a list of module names")
    check_builtin(path, builtin, allow_modules)
    return Config(path, builtin, data.get("suite", {}))


_SUITE_KEYS: dict[str, type | tuple[type, ...]] = {
    "description": str,
    "dataset": (str, dict),
    "classifier": (str, dict),
    "scorers": list,
    "metrics": list,
    "generators": list,
    "seeds": list,
    "corruptions": list,
    "clean": bool,
    "bootstrap": dict,
    "data_root": str,
    "batch_size": int,
    "correctors": list,
    "log": list,
    "validation": int,
    "active": dict,
    "attacks": list,
}
_REQUIRED_KEYS = ("dataset", "classifier", "scorers", "metrics")


def parse_suite(config: Config, name: str, registry: Registry | None = None, **overrides: Any) -> Suite:
    """The suite ``name`` from ``config``, with CLI ``overrides`` (e.g. seeds,
    data_root) applied, validated against ``registry`` when given."""
    if name not in config.suites:
        raise UserError(
            f"unknown suite {name!r}{suggest(name, config.suites)} in {config.path}; "
            f"suites: {', '.join(sorted(config.suites)) or 'none'}"
        )
    raw = dict(config.suites[name])
    raw.update({k: v for k, v in overrides.items() if v is not None})
    where = f"{config.path.name}: suite {name!r}"

    _check_keys(raw, _SUITE_KEYS, where)
    for key in _REQUIRED_KEYS:
        if key not in raw:
            raise UserError(f"{where}: missing key {key!r}")

    seeds = raw.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise UserError(f"{where}: 'seeds' must be a non-empty list of non-negative integers, got {seeds!r}")
    if raw.get("batch_size", 256) <= 0:
        raise UserError(f"{where}: 'batch_size' must be positive")
    if raw.get("validation", 0) < 0:
        raise UserError(f"{where}: 'validation' (training images held out) must be >= 0, got {raw['validation']}")

    suite = Suite(
        name=name,
        description=raw.get("description", ""),
        dataset=_component(raw["dataset"], where, "dataset"),
        classifier=_component(raw["classifier"], where, "classifier"),
        scorers=tuple(_component(s, where, "scorers") for s in raw["scorers"]),
        metrics=tuple(_metric_name(m, where) for m in raw["metrics"]),
        generators=tuple(_component(g, where, "generators") for g in raw.get("generators", [])),
        seeds=tuple(seeds),
        corruptions=tuple(_severity_spec(c, where, "corruptions", CorruptionSpec) for c in raw.get("corruptions", [])),
        clean=raw.get("clean", True),
        bootstrap=_bootstrap(raw.get("bootstrap", {}), where),
        data_root=raw.get("data_root"),
        batch_size=raw.get("batch_size", 256),
        correctors=tuple(_component(c, where, "correctors") for c in raw.get("correctors", [])),
        validation=raw.get("validation", 0),
        log=tuple(_component(entry, where, "log") for entry in raw.get("log", [])),
        active=_active(raw["active"], where) if "active" in raw else None,
        attacks=tuple(_severity_spec(a, where, "attacks", AttackSpec) for a in raw.get("attacks", [])),
    )
    for kind, specs in (("scorer", suite.scorers), ("generator", suite.generators), ("corrector", suite.correctors)):
        labels = [s.label for s in specs]
        for label in labels:
            if labels.count(label) > 1:
                raise UserError(f"{where}: {kind} {label!r} appears twice; give one a distinct 'label'")
    if registry is not None:
        validate(suite, registry, where)
    return suite


def _check_keys(table: dict[str, Any], allowed: dict[str, type | tuple[type, ...]], where: str) -> None:
    """Every key of ``table`` is in ``allowed`` and of its type (a bool is not an int)."""
    for key, value in table.items():
        if key not in allowed:
            raise UserError(f"{where}: unknown key {key!r}{suggest(key, allowed)}")
        expected = allowed[key]
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is int):
            names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            raise UserError(f"{where}: key {key!r} must be a {names}, got {type(value).__name__} {value!r}")


def _component(value: Any, where: str, key: str) -> ComponentSpec:
    if isinstance(value, str):
        return ComponentSpec(value)
    if isinstance(value, dict):
        options = dict(value)
        name = options.pop("name", None)
        if not isinstance(name, str):
            raise UserError(f"{where}: an entry of {key!r} is a table without a 'name': {value!r}")
        label = options.pop("label", "")
        return ComponentSpec(name, options, label)
    raise UserError(f"{where}: entries of {key!r} must be names or tables with a 'name', got {value!r}")


def _metric_name(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"{where}: 'metrics' entries must be metric names, got {value!r}")
    return value


def _severity_spec(value: Any, where: str, key: str, spec_class: type[CorruptionSpec]) -> Any:
    """An entry of ``corruptions`` or ``attacks``: a name or a table with its options and ``severities`` (1..5)."""
    spec = _component(value, where, key)
    options = dict(spec.options)
    severities = options.pop("severities", [1, 2, 3, 4, 5])
    if (
        not isinstance(severities, list)
        or not severities
        or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 5 for s in severities)
    ):
        kind = key.rstrip("s")
        raise UserError(f"{where}: {kind} {spec.name!r} severities must be a list of 1..5, got {severities!r}")
    return spec_class(spec.name, options, tuple(severities))


def _bootstrap(value: dict, where: str) -> Bootstrap:
    allowed: dict[str, tuple[type, ...]] = {"resamples": (int,), "confidence": (float, int), "seed": (int,)}
    for key, val in value.items():
        if key not in allowed:
            raise UserError(f"{where}: unknown bootstrap key {key!r}{suggest(key, allowed)}")
        if not isinstance(val, allowed[key]) or isinstance(val, bool):
            kind = "an integer" if allowed[key] == (int,) else "a number"
            raise UserError(f"{where}: bootstrap {key} must be {kind}, got {type(val).__name__} {val!r}")
    boot = Bootstrap(**value)
    if boot.resamples < 0:
        raise UserError(f"{where}: bootstrap resamples must be >= 0 (0 turns intervals off)")
    if not 0 < boot.confidence < 1:
        raise UserError(f"{where}: bootstrap confidence must be between 0 and 1, got {boot.confidence}")
    if boot.seed < 0:
        raise UserError(f"{where}: bootstrap seed must be >= 0, got {boot.seed}")
    return boot


def validate(suite: Suite, registry: Registry, where: str) -> None:
    """Every named component exists and gets only options it accepts."""
    from probebench.registry import check_options

    def check(kind: str, spec: ComponentSpec | CorruptionSpec) -> None:
        try:
            cls = registry.get(kind, spec.name)
            options = dict(spec.options)
            if kind == "corrector":
                options.pop("generator", None)  # pins the generator label; read by the correction stage
                options.pop("prober", None)  # names the guiding prober (a scorer label); ditto
                flag = options.pop("flag", "youden")  # how the loop flags images; ditto
                if flag not in ("youden", "argmax"):
                    raise UserError(
                        f"corrector {getattr(spec, 'label', spec.name)!r}: flag must be 'youden' (the validation threshold) or 'argmax' "
                        f"(P(hit) < 0.5, as the reference selects images), got {flag!r}"
                    )
            if ":" in spec.name:
                options["variant"] = spec.name.split(":", 1)[1]
            check_options(kind, spec.name, cls, options)
            check_nested_options(registry, kind, spec.name, cls, options)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None

    check("dataset", suite.dataset)
    check("classifier", suite.classifier)
    for spec in suite.log:
        check("logger", spec)
    for spec in suite.scorers:
        check("scorer", spec)
    for corruption in suite.corruptions:
        check("corruption", corruption)
    for attack in suite.attacks:
        check("attack", attack)
    for spec in suite.generators:
        check("generator", spec)
    for metric in suite.metrics:
        check("metric", ComponentSpec(metric))
    for spec in suite.correctors:
        check("corrector", spec)
    if suite.active is not None:
        _check_active(suite, registry, check, where)
    if suite.correctors:
        _check_correction_inputs(suite, registry, where)


def check_nested_options(registry: Registry, kind: str, name: str, cls: type[Any], options: dict[str, Any]) -> None:
    """Options that are another component's options (``cls.nested_options``:
    {option: (kind, option naming the component)}) against that component."""
    from probebench.registry import check_options, options_of

    for option, (inner_kind, name_option) in (getattr(cls, "nested_options", None) or {}).items():
        nested = options.get(option)
        if not isinstance(nested, dict) or not nested:
            continue
        parameter = options_of(cls).get(name_option)
        inner = options.get(name_option, None if parameter is None else parameter.default)
        if not isinstance(inner, str):
            continue  # no default and not given: the constructor reports it
        try:
            check_options(inner_kind, inner, registry.get(inner_kind, inner), dict(nested))
        except UserError as exc:
            raise UserError(f"{kind} {name!r} option {option!r}: {exc}") from None


def _check_correction_inputs(suite: Suite, registry: Registry, where: str) -> None:
    """Correctors edit in a generator's latent space guided by a scorer that
    declares the ``probebench.kinds.Guide`` capability: the suite must have
    both, and a corrector's ``prober`` option must name such a scorer."""
    from probebench.kinds import can_guide, uses_generator

    guides = []
    for spec in suite.scorers:
        cls = registry.get("scorer", spec.name)
        if not can_guide(cls):
            continue
        if not callable(getattr(cls, "p_hit", None)):
            raise UserError(
                f"{where}: scorer {spec.name!r} declares guides_correctors = True but has no p_hit(images) method; "
                f"see docs/plugins.md, Scorer"
            )
        guides.append(spec.label)
    missing = []
    if not suite.generators and any(uses_generator(registry.get("corrector", s.name)) for s in suite.correctors):
        missing.append("'generators'")
    if not guides:
        others = ", ".join(spec.label for spec in suite.scorers)
        verb = "does" if len(suite.scorers) == 1 else "do"
        missing.append(
            f"a scorer that can guide them (guides_correctors = True, like 'prober'; {others} {verb} not declare it)"
        )
    if missing:
        raise UserError(f"{where}: correctors need a generator and a prober; the suite lacks {' and '.join(missing)}")
    for spec in suite.correctors:
        guide = spec.options.get("prober")
        if guide is not None and guide not in guides:
            cannot = " (a scorer that cannot guide correctors)" if guide in {s.label for s in suite.scorers} else ""
            raise UserError(
                f"{where}: corrector {spec.label!r} names prober {guide!r}{cannot}{suggest(str(guide), guides)}; "
                f"the suite's probers: {', '.join(guides)}"
            )


_ACTIVE_KEYS: dict[str, type | tuple[type, ...]] = {
    "rounds": int,
    "budget": int,
    "pool": int,
    "strategies": list,
    "oracle": (str, dict, list),
    "warm_start": bool,
}


def _active(value: dict, where: str) -> ActiveSpec:
    """The ``active`` table, checked: one line per mistake, naming the key."""
    where = f"{where}: active"
    _check_keys(value, _ACTIVE_KEYS, where)
    for key in ("rounds", "budget", "pool", "strategies"):
        if key not in value:
            raise UserError(
                f"{where}: missing key {key!r} (e.g. active = {{ rounds = 5, budget = 100, pool = 2000, "
                f'strategies = ["random", "entropy"] }})'
            )
        if key != "strategies" and value[key] < 1:
            raise UserError(f"{where}: {key!r} must be >= 1, got {value[key]}")
    if not value["strategies"]:
        raise UserError(f"{where}: 'strategies' is empty; name at least one acquirer (`probebench ls acquirer`)")
    strategies = tuple(_component(s, where, "strategies") for s in value["strategies"])
    labels = [s.label for s in strategies]
    for label in labels:
        if labels.count(label) > 1:
            raise UserError(f"{where}: strategy {label!r} appears twice; give one a distinct 'label'")
    oracle = value.get("oracle", "ensemble-oracle")
    oracles = tuple(_component(o, where, "oracle") for o in (oracle if isinstance(oracle, list) else [oracle]))
    if not oracles:
        raise UserError(f"{where}: 'oracle' is empty; name the oracle that labels generated images")
    return ActiveSpec(
        value["rounds"], value["budget"], value["pool"], strategies, oracles, value.get("warm_start", False)
    )


def _check_active(suite: Suite, registry: Registry, check: Any, where: str) -> None:
    """Acquirers and oracles exist and take their options; an oracle that
    cannot label generated images is not asked to; the pool holds enough."""
    active = suite.active
    assert active is not None
    for kind, specs in (("acquirer", active.strategies), ("oracle", active.oracles)):
        for spec in specs:
            check(kind, spec)
            try:  # constructors are cheap and check their values: fail before anything trains
                registry.create(kind, spec.name, spec.options)
            except UserError as exc:
                raise UserError(f"{where}: active: {exc}") from None
    for spec in active.oracles:
        if not getattr(registry.get("oracle", spec.name), "labels_generated", False):
            raise UserError(
                f"{where}: active oracle {spec.label!r} cannot label generated images (labels_generated is not True); "
                f"use 'ensemble-oracle' or 'source-label' ({POOL_ORACLE!r} labels the pool picks of every strategy)"
            )
    picks = active.rounds * active.budget
    if picks > active.pool:
        raise UserError(
            f"{where}: active: {active.rounds} rounds x budget {active.budget} = {picks} images, "
            f"more than the pool of {active.pool}; raise 'pool' or lower 'rounds'/'budget'"
        )
