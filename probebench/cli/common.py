"""Options and helpers shared by the commands."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from probebench.errors import suggest

if TYPE_CHECKING:  # neither is imported at CLI start-up
    from rich.console import Console

    from probebench.registry import Registry
    from probebench.report.ties import Ties
    from probebench.suite import Config

RegistryOption = Annotated[
    Path | None,
    typer.Option("--registry", help="registry.toml to read plugins and suites from (default: the project's)."),
]
RESULTS_DIR = Path("results")  # the default of --results-dir, resolved by default_results_dir when not given


def default_results_dir() -> Path:
    """``$PROBEBENCH_RESULTS``; else ``results/`` of the project: beside the
    ``registry.toml`` in the current folder or the nearest folder above it
    (``$PROBEBENCH_REGISTRY``'s folder when that is set); else ``./results``."""
    env = os.environ.get("PROBEBENCH_RESULTS")
    if env:
        return Path(env)
    registry = os.environ.get("PROBEBENCH_REGISTRY")
    if registry:
        return Path(registry).resolve().parent / RESULTS_DIR
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "registry.toml").is_file():
            return folder / RESULTS_DIR
    return RESULTS_DIR


def _results_dir(ctx: typer.Context, param: typer.CallbackParam, value: Path) -> Path:
    source = ctx.get_parameter_source(param.name or "")
    if source is not None and source.name == "DEFAULT":
        return default_results_dir()
    return value


ResultsDirOption = Annotated[
    Path,
    typer.Option(
        "--results-dir",
        envvar="PROBEBENCH_RESULTS",
        callback=_results_dir,
        show_default=False,
        help="Folder holding one sub-folder per run (default: $PROBEBENCH_RESULTS, else results/ beside the "
        "project's registry.toml, found from the current folder upward, else ./results).",
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON document on stdout and nothing else (messages go to stderr); keys in docs/cli.md.",
    ),
]
IncludeFailedOption = Annotated[
    bool,
    typer.Option(
        "--include-failed",
        help="Also use runs whose run.json status is not 'finished' (failed, interrupted, running).",
    ),
]


def load(ctx: typer.Context, registry_path: Path | None) -> tuple[Config, Registry]:
    """(config, registry) for this invocation, honouring --disable-plugin."""
    from probebench.registry import Registry
    from probebench.suite import load_config

    config = load_config(registry_path, (ctx.obj or {}).get("allowed", []))
    disabled = (ctx.obj or {}).get("disabled", [])
    registry = Registry(config.builtin, disabled=disabled)
    for name in sorted(set(disabled) - registry.skipped):
        from probebench.console import console

        known = {p.name for p in registry.plugins.values()} | {p.distribution for p in registry.plugins.values()}
        console.print(
            f"[yellow]warning: --disable-plugin {name}: no plugin or distribution of that name"
            f"{suggest(name, known)}; `probebench plugins` lists them[/]",
            soft_wrap=True,
        )
    return config, registry


def stdout_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=160)


DEFAULT_ALPHA = 0.05  # the level of the tied-best tests (probebench.significance)
AlphaOption = Annotated[
    float,
    typer.Option(
        "--alpha",
        help="Level of the tests that mark tied-best values: bold every value whose difference from the best "
        "is not significant (paired bootstrap over the same test resamples and seeds, Holm-corrected). "
        "0 bolds only the best.",
    ),
]


def tie_rule(alpha: float, run_dirs: list[Path], heads: dict, registry: Callable[[], Registry]) -> Ties:
    """The tied-best rule of a table drawn from ``run_dirs``; ``registry()`` (the
    plugins, to recompute metrics from the runs' scores) is called only when ``alpha`` > 0."""
    from probebench.report.ties import Replicates, Ties, registry_metrics
    from probebench.significance import check_alpha

    check_alpha(alpha)
    factory = registry_metrics(registry()) if alpha > 0 else (lambda name: None)
    return Ties(alpha, Replicates({run.name: run for run in run_dirs}, heads, factory))


def print_tables(renderables: list[Any]) -> None:
    """Print rich tables on stdout, each at a width that fits it whole (at
    least 160 columns): a name in a table is never truncated or wrapped."""
    from rich.console import Console

    probe = Console(width=10_000)
    for renderable in renderables:
        width = max(160, probe.measure(renderable).maximum)
        Console(highlight=False, soft_wrap=False, width=width).print(renderable)


def deprecated_alias(old: str, new: str, value: str | None) -> str | None:
    """``value`` of a hidden, renamed option, with a one-line warning on stderr when it was given."""
    if value is not None:
        from probebench.console import console

        console.print(f"[yellow]warning: {old} is deprecated and will be removed; use {new}[/]", soft_wrap=True)
    return value
