"""``probebench new-plugin NAME``: write a plugin package skeleton, cookiecutter-style."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from probebench.cli.common import RegistryOption, load
from probebench.errors import UserError


def new_plugin(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            help="Distribution name, kebab-case, e.g. probebench-logit-gap "
            "(the component is named without the 'probebench-' prefix).",
        ),
    ],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="Kind of the component: scorer, corrector, metric, dataset, corruption, classifier, generator, prober.",
        ),
    ] = "scorer",
    out: Annotated[Path, typer.Option("--out", help="Folder to create the package folder in.")] = Path("."),
    registry: RegistryOption = None,
) -> None:
    """Write a working plugin package: pyproject with the entry point, a module with one component, one test."""
    from probebench.console import console
    from probebench.scaffold import Names, write_plugin

    names = Names.from_distribution(name, kind)
    kind = names.kind
    _config, reg = load(ctx, registry)
    if names.component in reg.entries[kind]:
        owner = reg.entry(kind, names.component).plugin
        raise UserError(
            f"{kind} {names.component!r} already exists (from {owner.distribution}); choose another name, "
            f"e.g. {name}-2 or a prefix naming your lab"
        )
    root = write_plugin(name, kind, out)
    console.print(
        f"wrote {root}/ — {kind} {names.component!r} in {names.module}/__init__.py, "
        f"test in tests/test_{names.module}.py",
        soft_wrap=True,
        markup=False,
    )
    console.print("next:", markup=False)
    for step in (
        f"pip install -e '{root}[test]'",
        f"python -m pytest {root}",
        f"probebench show {kind} {names.component}",
        "docs/plugins.md: the contract of every kind and how to run your component in a suite",
    ):
        console.print(f"  {step}", soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    app.command("new-plugin")(new_plugin)
