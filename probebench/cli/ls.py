"""``probebench ls [KIND] [PATTERN]``: the registered components."""

from __future__ import annotations

from typing import Annotated

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
    table = Table("kind", "name", "plugin", "description", box=None, pad_edge=False)
    for k in kinds:
        for name in reg.names(k, pattern):
            entry = reg.entry(k, name)
            table.add_row(
                k, name, entry.plugin.distribution if not entry.plugin.builtin else "built-in", first_line(entry.cls)
            )
    if not table.row_count:
        names = [name for k in kinds for name in reg.names(k, "*")]
        what = f"{kinds[0]} " if len(kinds) == 1 else ""
        raise UserError(
            f"no {what}name matches {pattern!r}{suggest(pattern, names)}; "
            f"`probebench ls {kinds[0] if len(kinds) == 1 else ''}` lists them all".replace("  ", " ")
        )
    stdout_console().print(table)


def register(app: typer.Typer) -> None:
    app.command("ls")(ls)
