"""``probebench corruption-grid``: one test image under every corruption and severity, as a PNG."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.common import REGISTRY_OPTION, load


def corruption_grid(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    dataset: str = typer.Option(None, "--dataset", help="Dataset to take the image from (default: the default suite's)."),
    corruptions: str = typer.Option("*", "--corruptions",
                                    help="Comma-separated names or fnmatch patterns, e.g. 'cure-*' (default: all)."),
    index: int = typer.Option(0, "--index", help="Which test image."),
    seed: int = typer.Option(0, "--seed", help="Run seed the corruptions' random draws derive from."),
    data_root: str = typer.Option(None, "--data-root", help="Folder with local data files for real datasets."),
    registry: Path = REGISTRY_OPTION,
):
    """Draw one test image clean and under each corruption at severities 1-5."""
    from harness.errors import UserError
    from harness.report.grids import corruption_grid as draw
    from harness.suite import DEFAULT_SUITE, ComponentSpec, parse_suite

    config, reg = load(ctx, registry)
    if dataset is None:
        spec = parse_suite(config, DEFAULT_SUITE, reg).dataset
    else:
        reg.get("dataset", dataset)
        spec = ComponentSpec(dataset)
    names = []
    for pattern in [p.strip() for p in corruptions.split(",") if p.strip()]:
        matched = reg.names("corruption", pattern)
        if not matched:
            reg.get("corruption", pattern)  # an unknown plain name suggests close ones
            raise UserError(f"no corruption matches {pattern!r}; `probebench ls corruptions` lists them")
        names += [n for n in matched if n not in names]
    path = draw(reg, spec, names, out, data_root=data_root, index=index, seed=seed)
    typer.echo(f"wrote {path} ({len(names)} corruptions x severities 1-5)")


def register(app: typer.Typer) -> None:
    app.command("corruption-grid")(corruption_grid)
