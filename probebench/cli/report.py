"""``probebench report RUN --out report.html``: one self-contained HTML page of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from probebench.cli.common import (
    DEFAULT_ALPHA,
    RESULTS_DIR,
    AlphaOption,
    RegistryOption,
    ResultsDirOption,
    load,
    tie_rule,
)
from probebench.errors import UserError


def report(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run folder or id under --results-dir, or 'latest'.")] = "latest",
    out: Annotated[Path | None, typer.Option("--out", help="HTML file to write (default: <run>/report.html).")] = None,
    corruption: Annotated[
        str | None, typer.Option("--corruption", help="Test cell the curves are drawn for (default: clean).")
    ] = None,
    severity: Annotated[
        int | None, typer.Option("--severity", help="Severity of --corruption (default: the lowest).")
    ] = None,
    vector: Annotated[
        bool, typer.Option("--vector", help="Also write each figure as PDF and SVG beside its PNG, for a paper.")
    ] = False,
    log_risk: Annotated[
        bool, typer.Option("--log-risk", help="Draw the risk-coverage curves on a logarithmic risk axis.")
    ] = False,
    save_plots: Annotated[
        Path | None,
        typer.Option("--save-plots", hidden=True, help="Old name: the folder for the figures (default: beside --out)."),
    ] = None,
    results_dir: ResultsDirOption = RESULTS_DIR,
    alpha: AlphaOption = DEFAULT_ALPHA,
    registry: RegistryOption = None,
) -> None:
    """Write an HTML report (run header, tables, ROC, risk-coverage, accuracy-vs-percentile, reliability, corruption heatmaps, corrected misses, generator samples; images inlined) and each figure as <out stem>-figures/<section>.png."""
    from probebench import results
    from probebench.console import console
    from probebench.report.html import build, figures_dir, save_figures

    run_dir = results.resolve_run(run, results_dir)
    target = out or run_dir / "report.html"
    folder = save_plots or figures_dir(target)
    ties = tie_rule(alpha, [run_dir], {run_dir.name: results.read_header(run_dir)}, lambda: load(ctx, registry)[1])
    report = build(run_dir, corruption, severity, log_risk, ties)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(report.page, encoding="utf-8")
        written = save_figures(report.figures, folder, vector)
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or target}: {exc.strerror or exc}; choose another --out") from None
    finally:
        report.close()
    console.print(f"report: {target} ({len(report.page) / 1e6:.1f} MB)", soft_wrap=True)
    console.print(f"figures: {len(written)} files in {folder}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
