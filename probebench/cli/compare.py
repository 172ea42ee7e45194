"""``probebench compare RUN_A RUN_B``: metric deltas between two runs; exit 1 on a regression.

For CI: run the suite, then ``probebench compare results/baseline results/new``;
the job fails when a metric got worse than the tolerance allows (exit code 1),
and a bad argument exits 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from probebench.cli.common import (
    RESULTS_DIR,
    IncludeFailedOption,
    JsonOption,
    ResultsDirOption,
    deprecated_alias,
    stdout_console,
)
from probebench.errors import UserError, suggest

if TYPE_CHECKING:  # pandas stays out of CLI start-up
    import pandas as pd

    from probebench.report.leaderboard import View
    from probebench.results import Header

COMPARE_FORMATS = ("table", "markdown", "csv")
DEFAULT_TOLERANCE = "0.01"


def _label(row: pd.Series, side: str, digits: int) -> str:
    from probebench.results import format_cell

    cell = {
        "value": row[f"value_{side}"],
        "std": row[f"std_{side}"],
        "seeds": row[f"seeds_{side}"],
        "ci_low": row[f"ci_low_{side}"],
        "ci_high": row[f"ci_high_{side}"],
        "cells": 1,
    }
    return format_cell(cell, digits)


def compare(
    run_a: Annotated[str, typer.Argument(help="Baseline run (folder, id under --results-dir, or 'latest').")],
    run_b: Annotated[str, typer.Argument(help="Run to check against the baseline.")],
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Compare only these metrics (repeatable or comma-separated).")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="Filter key=value[,value...] applied to both runs; repeatable."),
    ] = None,
    tolerance: Annotated[
        list[str],
        typer.Option(
            "--tolerance",
            help="Allowed worsening: a number in unit scale (×1000 for AURC) or metric=number in stored units; "
            "repeatable.",
        ),
    ] = [DEFAULT_TOLERANCE],  # noqa: B006  (never mutated; --help shows it as the default)
    require_disjoint: Annotated[
        bool,
        typer.Option(
            "--require-disjoint/--allow-overlap",
            help="Count a worsening as a regression only when the two intervals (bootstrap, or ± std over seeds) "
            "do not overlap, so noise never fails a job; --allow-overlap counts every worsening beyond --tolerance.",
        ),
    ] = True,
    status: Annotated[
        str, typer.Option("--status", help="Rows to show: all, changed (improved or regressed) or regressions.")
    ] = "all",
    show: Annotated[str | None, typer.Option("--show", hidden=True, help="Deprecated: use --status.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, markdown or csv.")] = "table",
    results_dir: ResultsDirOption = RESULTS_DIR,
    include_failed: IncludeFailedOption = False,
    as_json: JsonOption = False,
) -> None:
    """Deltas B - A per cell, * where the intervals do not overlap; exit 1 on a regression beyond --tolerance."""
    from probebench import results
    from probebench.cli.leaderboard import json_document, split_list
    from probebench.console import console
    from probebench.report import leaderboard as board
    from probebench.report.compare import Tolerance, compare_tables

    if fmt not in COMPARE_FORMATS:
        raise UserError(
            f"unknown format {fmt!r}{suggest(fmt, COMPARE_FORMATS)}; use one of {', '.join(COMPARE_FORMATS)}"
        )
    status = deprecated_alias("--show", "--status", show) or status
    if status not in ("all", "changed", "regressions"):
        raise UserError(f"--status takes all, changed or regressions, got {status!r}")
    tol = Tolerance.parse(tolerance)
    dirs = results.finished_only(
        [results.resolve_run(r, results_dir) for r in (run_a, run_b)], include_failed, refuse=True
    )
    failed = [d for d in dirs if results.read_header(d).get("failures")]
    (table_a, heads_a), (table_b, heads_b) = results.combine([dirs[0]]), results.combine([dirs[1]])
    head_a, head_b = heads_a[dirs[0].name], heads_b[dirs[1].name]
    view = board.View([], [], split_list(metric or []) or None, board.parse_where(list(where or [])))
    table_a, table_b = _filter(table_a, view), _filter(table_b, view)
    directions = {**results.directions(head_a), **results.directions(head_b)}
    scales = {**results.scales(head_a), **results.scales(head_b)}
    diff, only_a, only_b = compare_tables(table_a, table_b, directions, scales, tol, require_disjoint)

    seeds = {"a": sorted(table_a["seed"].unique().tolist()), "b": sorted(table_b["seed"].unique().tolist())}
    notes = run_differences(head_a, head_b, seeds)
    if only_a or only_b:
        notes.append(f"{only_a} cell(s) only in A and {only_b} only in B are not compared")
    for note in notes:
        console.print(f"[yellow]note: {note}[/]", soft_wrap=True)

    shown = diff
    if status == "changed":
        shown = diff[diff["status"].isin(["regression", "improved"])]
    elif status == "regressions":
        shown = diff[diff["status"] == "regression"]
    counts = {
        "regressions": int((diff["status"] == "regression").sum()),
        "improvements": int((diff["status"] == "improved").sum()),
        "disjoint": int(diff["disjoint"].sum()),
        "cells": len(diff),
        "only_a": only_a,
        "only_b": only_b,
    }
    if as_json:
        body: dict[str, Any] = {"a": str(dirs[0]), "b": str(dirs[1]), "seeds": seeds, "notes": notes}
        body["summary"] = counts
        body |= {"require_disjoint": require_disjoint, "failed_runs": [str(d) for d in failed]}
        typer.echo(json_document({**body, "cells": _records(shown)}, directions, scales), nl=False)
    else:
        _print(shown, diff, directions, scales, fmt, dirs)
    colour = "red" if counts["regressions"] else "green"
    rule = "with non-overlapping intervals" if require_disjoint else "(--allow-overlap)"
    console.print(
        f"[{colour}]{counts['regressions']} regression(s) beyond tolerance {rule}[/]; {counts['improvements']} "
        f"improvement(s); {counts['disjoint']} of {counts['cells']} cell(s) with non-overlapping intervals (*)",
        soft_wrap=True,
    )
    if failed:  # a run with failures has no numbers for some methods: never a clean pass
        console.print(f"[red]{' and '.join(str(d) for d in failed)} recorded component failures[/]", soft_wrap=True)
    if counts["regressions"] or failed:
        raise typer.Exit(1)


def run_differences(head_a: Header, head_b: Header, seeds: dict[str, list[int]]) -> list[str]:
    """What differs between two runs besides their numbers: seeds, suite config."""
    from probebench import results

    notes = []
    if seeds["a"] != seeds["b"]:
        notes.append(
            f"the runs used different seeds (A: {', '.join(map(str, seeds['a']))}; "
            f"B: {', '.join(map(str, seeds['b']))}): part of a change can be seed noise"
        )
    if results.run_config(head_a) != results.run_config(head_b):
        heads = {"A": head_a, "B": head_b}
        changes = results.config_differences(heads, [results.run_config(head_a), results.run_config(head_b)])
        notes.append("the runs' suite configs differ: " + ("; ".join(changes) or "see run.json"))
    return notes


COMPARE_FIELDS = ("value", "std", "seeds", "ci_low", "ci_high")


def _records(shown: pd.DataFrame) -> list[dict[str, Any]]:
    """One JSON-ready dict per compared cell: its keys, a and b (value, std,
    seeds, ci_low, ci_high), delta, disjoint, status."""
    import math

    from probebench.report.compare import CELL_KEYS

    def number(value: Any) -> Any:
        value = value.item() if hasattr(value, "item") else value
        return None if isinstance(value, float) and math.isnan(value) else value

    out = []
    for _, row in shown.iterrows():
        record = {key: number(row[key]) for key in CELL_KEYS}
        for side in ("a", "b"):
            record[side] = {name: number(row[f"{name}_{side}"]) for name in COMPARE_FIELDS}
        record |= {"delta": number(row["delta"]), "disjoint": bool(row["disjoint"]), "status": row["status"]}
        out.append(record)
    return out


def _filter(table: pd.DataFrame, view: View) -> pd.DataFrame:
    from probebench.report import leaderboard as board

    notes: list[str] = []
    view = board.View(["corruption"], [], view.metrics, view.where)  # keep every cell: no clean-only default
    return board.select(table, view, notes)


def _print(
    shown: pd.DataFrame,
    diff: pd.DataFrame,
    directions: dict[str, bool],
    scales: dict[str, float],
    fmt: str,
    dirs: list[Path],
) -> None:
    import pandas as pd

    from probebench.report.tables import metric_label
    from probebench.results import decimals

    varying = [
        k
        for k in ("suite", "dataset", "classifier", "corruption", "severity", "method")
        if diff[k].nunique() > 1 or k in ("method",)
    ]
    places = {m: decimals(pd.concat([part["value_a"], part["value_b"]])) for m, part in diff.groupby("metric")}
    if fmt == "csv":
        columns = varying + [
            "metric",
            "value_a",
            "ci_low_a",
            "ci_high_a",
            "value_b",
            "ci_low_b",
            "ci_high_b",
            "delta",
            "disjoint",
            "status",
        ]
        typer.echo(shown[columns].to_csv(index=False, float_format="%.6g"), nl=False)
        return
    headers = varying + ["metric", f"A: {dirs[0].name}", f"B: {dirs[1].name}", "B - A", "status"]
    body = []
    for _, row in shown.iterrows():
        digits = places[row["metric"]]
        arrow = "↑" if directions.get(row["metric"], True) else "↓"
        delta = (
            "n/a" if row["delta"] != row["delta"] else f"{row['delta']:+.{digits}f}" + (" *" if row["disjoint"] else "")
        )
        body.append(
            [str(row[k]) for k in varying]
            + [
                f"{metric_label(row['metric'], scales)} {arrow}",
                _label(row, "a", digits),
                _label(row, "b", digits),
                delta,
                row["status"],
            ]
        )
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        typer.echo("\n".join(lines) + "\n\n* intervals do not overlap\n", nl=False)
        return
    from rich.table import Table

    table = Table(*headers, caption="* intervals do not overlap", caption_justify="left")
    style = {"regression": "red", "improved": "green"}
    for cells in body:
        status = cells[-1]
        table.add_row(*cells[:-1], f"[{style[status]}]{status}[/]" if status in style else status)
    stdout_console().print(table)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
