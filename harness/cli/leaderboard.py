"""``probebench leaderboard [RUN|latest]``: a pivot of a run's tidy results."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.common import RESULTS_DIR_OPTION, stdout_console


def leaderboard(
    run: str = typer.Argument("latest", help="Run folder or id under --results-dir, or 'latest'."),
    fmt: str = typer.Option("table", "--format", help="table, markdown or csv."),
    rows: str = typer.Option("method", "--rows", help="Comma-separated result columns for the rows."),
    cols: str = typer.Option("metric", "--cols", help="Comma-separated result columns for the columns."),
    corruption: str = typer.Option(None, "--corruption", help="Keep only this corruption ('none' = clean)."),
    results_dir: Path = RESULTS_DIR_OPTION,
):
    """Show a run's results as a table of methods x metrics (mean ± std over seeds)."""
    from harness import results
    from harness.errors import UserError, suggest
    from harness.report.tables import FORMATS, render

    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}{suggest(fmt, FORMATS)}; use one of {', '.join(FORMATS)}")
    run_dir = results.resolve_run(run, results_dir)
    table, head = results.load_run(run_dir)
    row_keys = [r for r in rows.split(",") if r]
    col_keys = [c for c in cols.split(",") if c]
    for key in row_keys + col_keys:
        if key not in results.KEYS:
            raise UserError(f"cannot pivot on {key!r}{suggest(key, results.KEYS)}; use any of {', '.join(results.KEYS)}")
    if corruption is not None:
        table = table[table["corruption"] == corruption]
    if "method" in row_keys + col_keys:
        table = table[table["method"] != "-"]
    if table.empty:
        raise UserError(f"run {run_dir} has no rows to show with these filters")
    directions = {m: d["higher_is_better"] for m, d in head.get("metrics", {}).items()}
    numbers, labels = results.pivot(table, row_keys, col_keys)
    rendered = render(numbers, labels, directions, fmt, title=f"{run_dir.name}")
    if isinstance(rendered, str):
        typer.echo(rendered, nl=False)
    else:
        stdout_console().print(rendered)


def register(app: typer.Typer) -> None:
    app.command("leaderboard")(leaderboard)
