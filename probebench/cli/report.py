"""``probebench report RUN --out report.html``: one self-contained HTML page of a run."""

from __future__ import annotations

from pathlib import Path

import typer

from probebench.cli.common import RESULTS_DIR_OPTION
from probebench.errors import UserError


def report(
    run: str = typer.Argument("latest", help="Run folder or id under --results-dir, or 'latest'."),
    out: Path = typer.Option(None, "--out", help="HTML file to write (default: <run>/report.html)."),
    corruption: str = typer.Option(None, "--corruption", help="Test cell the curves are drawn for (default: clean)."),
    severity: int = typer.Option(None, "--severity", help="Severity of --corruption (default: the lowest)."),
    save_plots: Path = typer.Option(None, "--save-plots", help="Also write each plot as a PNG into this folder."),
    results_dir: Path = RESULTS_DIR_OPTION,
):
    """Write an HTML report: run header, tables, ROC, risk-coverage, accuracy-vs-percentile,
    reliability, corruption heatmaps and any counterfactual grids, images inlined."""
    from probebench import results
    from probebench.console import console
    from probebench.report.html import build

    run_dir = results.resolve_run(run, results_dir)
    target = out or run_dir / "report.html"
    page = build(run_dir, corruption, severity, save_plots)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror or exc}; choose another --out") from None
    console.print(f"report: {target} ({len(page) / 1e6:.1f} MB)")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
