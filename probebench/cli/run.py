"""``probebench run [SUITE]``: run a suite and print its table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from probebench.cli.common import RegistryOption, default_results_dir, load, stdout_console
from probebench.errors import UserError
from probebench.suite import DEFAULT_SUITE

SUMMARY_METRICS = (
    "auroc,aupr-miss,fpr95,aurc,correction-rate,break-rate,net-accuracy-gain,tuned-net-accuracy-gain,median-steps,"
    "bits-per-dim,reconstruction-error,train-seconds"
)


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise UserError(f"--seeds takes comma-separated integers like 0,1,2, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise UserError(f"--seeds needs at least one non-negative integer, got {text!r}")
    return seeds


def run(
    ctx: typer.Context,
    suite: Annotated[str, typer.Argument(help="Suite name from registry.toml.")] = DEFAULT_SUITE,
    registry: RegistryOption = None,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="Comma-separated seeds overriding the suite's, e.g. 0,1,2.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto (cuda when available).")] = "auto",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output folder (default: a new <results dir>/<suite>-<time>, the results dir as in --results-dir of "
            "the other commands); must be new or empty.",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty --out folder, once the new run is complete.")
    ] = False,
    data_root: Annotated[
        str | None, typer.Option("--data-root", help="Folder with local data files for real datasets.")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Artifact cache (default: $PROBEBENCH_CACHE or ~/.cache/probebench)."),
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore cached artifacts and recompute everything.")] = False,
    show: Annotated[
        str,
        typer.Option(
            "--show",
            help="Comma-separated metrics of the printed summary (when the suite has them); all are "
            "in results.csv and `probebench leaderboard`. 'all' shows every one.",
        ),
    ] = SUMMARY_METRICS,
) -> None:
    """Run a benchmark suite: train, score, evaluate, and write results/<run-id>/."""
    from probebench.cache import ArtifactStore
    from probebench.suite import parse_suite

    config, reg = load(ctx, registry)
    resolved = parse_suite(config, suite, reg, seeds=_seeds(seeds), data_root=data_root)

    from probebench.console import console
    from probebench.paths import write_run_folder
    from probebench.pipeline.run import resolve_device, run_suite

    store, chosen_device = ArtifactStore(cache_dir, fresh=fresh), resolve_device(device)
    target, outcome = write_run_folder(
        out,
        resolved.name,
        lambda partial: run_suite(resolved, reg, store, chosen_device, partial),
        overwrite,
        results_root=default_results_dir(),
    )
    show_summary(target, None if show == "all" else [m for m in show.split(",") if m])
    if outcome.failures:
        console.print(f"[red]{len(outcome.failures)} component failure(s); the other results are complete:[/]")
        for failure in outcome.failures:
            console.print(
                f"  {failure['kind']} {failure['plugin']!r} in {failure['stage']} "
                f"({failure['cell']}): {failure['message']}",
                soft_wrap=True,
            )
        console.print(f"recorded under 'failures' in {target / 'run.json'}")
        raise typer.Exit(1)


def show_summary(run_dir: Path, metrics: list[str] | None = None) -> None:
    """Print the run's main table (clean test data, methods x ``metrics``)."""
    from probebench import results
    from probebench.evaluate import CLASSIFIER_METHOD
    from probebench.pipeline.generate import CLASSIFIER as NO_CLASSIFIER  # torch is loaded by now: a run just ended
    from probebench.report.tables import render

    table, head = results.load_run(run_dir)
    if metrics is not None:
        table = table[table["metric"].isin(metrics) | (table["method"] == CLASSIFIER_METHOD)]
    directions = {m: d["higher_is_better"] for m, d in head.get("metrics", {}).items()}
    console = stdout_console()
    clean = table[table["corruption"] == results.CLEAN]
    groups = list(clean.groupby(["dataset", "classifier"], sort=False))
    groups.sort(key=lambda group: group[0][1] == NO_CLASSIFIER)  # generator rows (no classifier) last
    for (dataset, classifier), part in groups:
        acc = part[part["method"] == CLASSIFIER_METHOD]
        what = f"{dataset} / {classifier}" if classifier != NO_CLASSIFIER else f"{dataset} generators"
        title = f"{head['suite']['name']}: {what}, clean test, seeds {sorted(part['seed'].unique().tolist())}"
        methods = part[part["method"] != CLASSIFIER_METHOD]
        if len(acc):
            numbers, labels = results.pivot(acc, ["dataset"], ["metric"])
            console.print(render(numbers, labels, directions, title=title, scales=results.scales(head)))
            title = ""
        # one table per set of metrics, so correctors are not shown beside scorers' empty columns
        blocks: dict[frozenset, list] = {}
        for method, metric_names in methods.groupby("method", sort=False)["metric"]:
            blocks.setdefault(frozenset(metric_names), []).append(method)
        for names in blocks.values():
            numbers, labels = results.pivot(methods[methods["method"].isin(names)], ["method"], ["metric"])
            console.print(render(numbers, labels, directions, title=title, scales=results.scales(head)))
            title = ""
    console.print(f"results: {run_dir}  (every metric: probebench leaderboard {run_dir})")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
