"""Options and helpers shared by the commands."""

from __future__ import annotations

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
ResultsDirOption = Annotated[Path, typer.Option("--results-dir", help="Folder holding one sub-folder per run.")]
RESULTS_DIR = Path("results")  # the default of --results-dir
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
