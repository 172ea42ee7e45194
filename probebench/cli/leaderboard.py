"""``probebench leaderboard [RUN ...|--all]``: pivots of one or more runs' tidy results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from probebench.cli.common import (
    DEFAULT_ALPHA,
    RESULTS_DIR,
    AlphaOption,
    IncludeFailedOption,
    JsonOption,
    RegistryOption,
    ResultsDirOption,
    load,
    print_tables,
    tie_rule,
)
from probebench.errors import UserError, suggest

if TYPE_CHECKING:
    from rich.table import Table


def gather_runs(runs: list[str] | None, all_runs: bool, results_dir: Path, include_failed: bool = False) -> list[Path]:
    """Run folders from names/paths/'latest' (refused unless finished), or every
    finished run under ``results_dir`` (the others skipped with one line each)."""
    from probebench import results

    if all_runs:
        if runs:
            raise UserError("give run names or --all, not both")
        found = results.finished_only(results.find_runs(results_dir), include_failed)
        if not found:
            raise UserError(f"no finished runs under {results_dir}; run `probebench run` first or pass --results-dir")
        return found
    named = [results.resolve_run(spec, results_dir) for spec in (runs or ["latest"])]
    return results.finished_only(named, include_failed, refuse=True)


def split_list(values: Sequence[str]) -> list[str]:
    """Items of repeatable, comma-separated options: ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def emit(text_or_tables: str | list[Table], out: Path | None) -> None:
    """Print rich tables or text to stdout, or write text to ``out``."""
    if isinstance(text_or_tables, str):
        if out is None:
            typer.echo(text_or_tables, nl=False)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text_or_tables)
            from probebench.console import console

            console.print(f"wrote {out}")
        return
    print_tables(list(text_or_tables))


def json_document(body: dict[str, Any], directions: dict[str, bool], scales: dict[str, float]) -> str:
    """The ``--json`` document of a command that shows tables: ``body`` plus
    ``metrics`` ({name: {higher_is_better, scale}}), as indented JSON text."""
    import json

    metrics = {m: {"higher_is_better": up, "scale": scales.get(m, 1)} for m, up in sorted(directions.items())}
    return json.dumps({**body, "metrics": metrics}, indent=2, default=str) + "\n"


def provenance_text(lines: list[dict[str, Any]], fmt: str) -> str:
    """The runs a table was drawn from, in ``fmt`` (markdown, html, latex; nothing for the others)."""
    if not lines:
        return ""
    if fmt == "markdown":
        head = "| run | suite | config | seeds | commit | probebench | torch | started | machine |"
        rows = [
            "| "
            + " | ".join(
                str(line[k]) if k != "seeds" else ",".join(map(str, line[k]))
                for k in ("run", "suite", "config", "seeds", "commit", "probebench", "torch", "started", "machine")
            )
            + " |"
            for line in lines
        ]
        return "\n**runs**\n\n" + "\n".join([head, "|" + "---|" * 9] + rows) + "\n"
    text = "; ".join(
        f"{line['run']} (config {line['config']}, seeds {','.join(map(str, line['seeds']))}, commit {line['commit']})"
        for line in lines
    )
    if fmt == "html":
        import html

        return f'<p class="provenance">runs: {html.escape(text)}</p>\n'
    if fmt == "latex":
        return "% runs: " + text + "\n"
    return ""


def leaderboard(
    ctx: typer.Context,
    runs: Annotated[
        list[str] | None, typer.Argument(help="Run folders or ids under --results-dir, or 'latest' (the default).")
    ] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Combine every run under --results-dir.")] = False,
    suite: Annotated[
        list[str] | None, typer.Option("--suite", help="Keep only these suites (repeatable or comma-separated).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, markdown, csv, html or latex.")] = "table",
    rows: Annotated[
        str,
        typer.Option(
            "--rows",
            help="Comma-separated keys for the rows (suite, dataset, "
            "corruption, severity, classifier, seed, method, metric, config, run).",
        ),
    ] = "method",
    cols: Annotated[str, typer.Option("--cols", help="Comma-separated keys for the columns.")] = "metric",
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Keep only these metrics (repeatable or comma-separated).")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="Filter key=value[,value...], e.g. corruption=none or severity=3; repeatable."),
    ] = None,
    corruption: Annotated[
        str | None, typer.Option("--corruption", help="Shorthand for --where corruption=NAME ('none' = clean).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of stdout (not with --format table).")
    ] = None,
    no_intervals: Annotated[
        bool,
        typer.Option(
            "--no-intervals",
            help="Show values only, without their bootstrap interval or ± std (csv and --json keep them as columns).",
        ),
    ] = False,
    results_dir: ResultsDirOption = RESULTS_DIR,
    include_failed: IncludeFailedOption = False,
    alpha: AlphaOption = DEFAULT_ALPHA,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show runs as tables: methods x metrics by default, mean ± std over seeds.
    Bold marks the best value and every value tied with it (see --alpha).

    Examples: methods x corruption (AUROC, mean over severities):
    `--all --cols corruption --metric auroc`; methods x severity:
    `--cols severity --metric auroc`. Runs whose suites differ in config are
    shown apart, never averaged together.
    """
    from probebench import results
    from probebench.report import leaderboard as board
    from probebench.report.tables import FORMATS, render_sections, to_json

    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}{suggest(fmt, FORMATS)}; use one of {', '.join(FORMATS)}")
    if out is not None and fmt == "table" and not as_json:
        raise UserError("--out needs a text format: add --format markdown, csv, html or latex (or --json)")
    filters = board.parse_where(list(where or []))
    if corruption is not None:
        filters.setdefault("corruption", []).append(corruption)
    if suite:
        filters.setdefault("suite", []).extend(split_list(suite))
    view = board.View(
        board.parse_keys(rows, "--rows"), board.parse_keys(cols, "--cols"), split_list(metric or []) or None, filters
    )
    overlap = set(view.rows) & set(view.cols)
    if overlap:
        raise UserError(f"{sorted(overlap)[0]!r} is in both --rows and --cols; use it in one")

    run_dirs = gather_runs(runs, all_runs, results_dir, include_failed)
    table, heads = results.combine(run_dirs)
    ties = tie_rule(alpha, run_dirs, heads, lambda: load(ctx, registry)[1])
    title = run_dirs[0].name if len(run_dirs) == 1 else f"{len(run_dirs)} runs"
    parts = board.sections(table, view, heads, title=title, ties=ties)
    scales = results.scales(list(heads.values()))
    directions = results.directions(list(heads.values()))
    lines = board.provenance(heads, board.select(table, view, []))
    if as_json:
        emit(json_document({"runs": lines, "tables": to_json(parts, directions)}, directions, scales), out)
        return
    if no_intervals and fmt != "csv":
        parts = [part.without_intervals() for part in parts]
    rendered = render_sections(parts, directions, fmt, scales)
    if isinstance(rendered, str):
        rendered += provenance_text(lines, fmt)
    emit(rendered, out)


def register(app: typer.Typer) -> None:
    app.command("leaderboard")(leaderboard)
