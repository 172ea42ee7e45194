"""``probebench plugins``: every plugin, its version and what it registers."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from probebench.cli.common import RegistryOption, load, stdout_console


def plugins(
    ctx: typer.Context,
    registry: RegistryOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for tooling.")] = False,
    builtin: Annotated[bool, typer.Option("--builtin/--no-builtin", help="Include the built-in plugins.")] = True,
) -> None:
    """List loaded plugins (built-in modules and third-party distributions)."""
    _config, reg = load(ctx, registry)
    infos = [p for p in reg.plugins.values() if builtin or not p.builtin]
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in infos], indent=2))
        return
    from rich.table import Table

    table = Table("plugin", "distribution", "version", "registers", box=None, pad_edge=False)
    for p in infos:
        registers = "; ".join(f"{kind}s: {', '.join(names)}" for kind, names in p.components.items())
        table.add_row(p.name, p.distribution, p.version, registers)
    stdout_console().print(table)


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)
