"""``probebench evaluate FILE... --name NAME``: per-sample scores computed
elsewhere, as a run folder that leaderboard, report and compare read unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from probebench.cli.common import RegistryOption, load


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def evaluate(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Per-sample score files (CSV, Parquet, NPZ): 'label' and either 'prediction' plus one "
            "confidence column per method, or logits (logit_0..logit_<C-1>, or an NPZ 'logits' array). "
            "Optional columns corruption, severity, seed place rows in cells.",
            metavar="FILE",
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="Name of the imported run (its suite column).")],
    higher_is_uncertain: Annotated[
        list[str] | None,
        typer.Option(
            "--higher-is-uncertain",
            help="A method column where higher means less confident (entropy, variance); it is negated. Repeatable.",
        ),
    ] = None,
    metrics: Annotated[str | None, typer.Option("--metrics", help="Comma-separated metric plugins.")] = None,
    scorers: Annotated[
        str | None,
        typer.Option(
            "--scorers",
            help="With logits: the scorers to compute, comma-separated (default: every scorer that needs only logits).",
        ),
    ] = None,
    num_classes: Annotated[
        int | None,
        typer.Option("--num-classes", help="Number of classes C, to check labels lie in 0..C-1 (logits imply it)."),
    ] = None,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset column of the rows.")] = "imported",
    classifier: Annotated[str, typer.Option("--classifier", help="Classifier column of the rows.")] = "imported",
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples per cell.", min=0)] = 1000,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: results/<name>-<time>).")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty --out folder, once the new run is complete.")
    ] = False,
    registry: RegistryOption = None,
) -> None:
    """Evaluate per-sample scores from elsewhere into a run folder (results.csv, run.json, scores.csv.gz)."""
    from probebench.cli.run import show_summary
    from probebench.imported import DEFAULT_METRICS, import_run
    from probebench.paths import write_run_folder
    from probebench.suite import Bootstrap

    _, reg = load(ctx, registry)
    target, _ = write_run_folder(
        out,
        name,
        lambda partial: import_run(
            files,
            name,
            reg,
            partial,
            metrics=_names(metrics) or DEFAULT_METRICS,
            bootstrap=Bootstrap(resamples=resamples),
            higher_is_uncertain=higher_is_uncertain or (),
            num_classes=num_classes,
            scorers=_names(scorers),
            dataset=dataset,
            classifier=classifier,
        ),
        overwrite,
    )
    show_summary(target)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
