"""``probebench ls [KIND] [PATTERN]``: the registered components."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from probebench.cli.common import RegistryOption, load, stdout_console
from probebench.errors import UserError, suggest


def first_line(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split()) if doc else ""


def ls(
    ctx: typer.Context,
    kind: Annotated[
        str | None, typer.Argument(help="Kind to list (dataset, scorer, ...; plural works too). Default: all.")
    ] = None,
    pattern: Annotated[str, typer.Argument(help="fnmatch pattern on names, e.g. 'mc-*'.")] = "*",
    registry: RegistryOption = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON list on stdout: kind, name, plugin, distribution, version, description."
        ),
    ] = False,
) -> None:
    """List registered components by kind, with the plugin that brought each."""
    from rich.table import Table

    from probebench.kinds import KINDS

    _config, reg = load(ctx, registry)
    kinds = list(KINDS)
    if kind:
        singular = kind[:-1] if kind.endswith("s") and kind[:-1] in KINDS else kind
        reg._check_kind(singular)
        kinds = [singular]
    rows: list[dict[str, Any]] = []
    for k in kinds:
        for name in reg.names(k, pattern):
            entry = reg.entry(k, name)
            rows.append(
                {
                    "kind": k,
                    "name": name,
                    "plugin": entry.plugin.name,
                    "distribution": entry.plugin.distribution,
                    "version": entry.plugin.version,
                    "builtin": entry.plugin.builtin,
                    "description": first_line(entry.cls),
                }
            )
    if not rows:
        names = [name for k in kinds for name in reg.names(k, "*")]
        what = f"{kinds[0]} " if len(kinds) == 1 else ""
        raise UserError(
            f"no {what}name matches {pattern!r}{suggest(pattern, names)}; "
            f"`probebench ls {kinds[0] if len(kinds) == 1 else ''}` lists them all".replace("  ", " ")
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("kind", "name", "plugin", "description", box=None, pad_edge=False)
    for row in rows:
        table.add_row(
            row["kind"], row["name"], "built-in" if row["builtin"] else row["distribution"], row["description"]
        )
    stdout_console().print(table)


def register(app: typer.Typer) -> None:
    app.command("ls")(ls)
