"""``probebench report RUN --out report.html``: one self-contained HTML page of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from probebench.cli.common import RESULTS_DIR, ResultsDirOption
from probebench.errors import UserError


def report(
    run: Annotated[str, typer.Argument(help="Run folder or id under --results-dir, or 'latest'.")] = "latest",
    out: Annotated[Path | None, typer.Option("--out", help="HTML file to write (default: <run>/report.html).")] = None,
    corruption: Annotated[
        str | None, typer.Option("--corruption", help="Test cell the curves are drawn for (default: clean).")
    ] = None,
    severity: Annotated[
        int | None, typer.Option("--severity", help="Severity of --corruption (default: the lowest).")
    ] = None,
    save_plots: Annotated[
        Path | None, typer.Option("--save-plots", help="Also write each plot as a PNG into this folder.")
    ] = None,
    results_dir: ResultsDirOption = RESULTS_DIR,
) -> None:
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
