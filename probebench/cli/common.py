"""Options and helpers shared by the commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from probebench.errors import suggest

if TYPE_CHECKING:  # neither is imported at CLI start-up
    from rich.console import Console

    from probebench.registry import Registry
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
