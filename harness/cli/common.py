"""Options and helpers shared by the commands."""

from __future__ import annotations

from pathlib import Path

import typer

REGISTRY_OPTION = typer.Option(
    None, "--registry", help="registry.toml to read plugins and suites from (default: the project's)."
)
RESULTS_DIR_OPTION = typer.Option(Path("results"), "--results-dir", help="Folder holding one sub-folder per run.")


def load(ctx: typer.Context, registry_path: Path | None):
    """(config, registry) for this invocation, honouring --disable-plugin."""
    from harness.registry import Registry
    from harness.suite import load_config

    config = load_config(registry_path)
    disabled = (ctx.obj or {}).get("disabled", [])
    return config, Registry(config.builtin, disabled=disabled)


def stdout_console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=160)
