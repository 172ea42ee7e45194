"""``probebench run [SUITE]``: run a suite and print its table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from probebench.cli.common import (
    JsonOption,
    RegistryOption,
    default_results_dir,
    deprecated_alias,
    load,
    print_tables,
)
from probebench.cli.leaderboard import split_list
from probebench.errors import UserError
from probebench.suite import DEFAULT_SUITE

if TYPE_CHECKING:  # pandas stays out of CLI start-up
    from probebench.report.tables import Section
    from probebench.results import Header

SUMMARY_METRICS = (
    "auroc,aupr-miss,fpr95,aurc,correction-rate,correction-rate-flagged,break-rate,net-accuracy-gain,"
    "tuned-net-accuracy-gain,abstain-selective-accuracy,median-steps,"
    "bits-per-dim,reconstruction-error,train-seconds"
)


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds: list[int] = []
        for part in (p for p in text.replace(" ", "").split(",") if p):
            span = re.fullmatch(r"(\d+)-(\d+)", part)  # a range, both ends included
            seeds += range(int(span[1]), int(span[2]) + 1) if span else [int(part)]
    except ValueError:
        raise UserError(f"--seeds takes comma-separated integers or ranges like 0,1,2 or 0-4, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise UserError(f"--seeds needs at least one non-negative integer, got {text!r}")
    return seeds


def run(
    ctx: typer.Context,
    suite: Annotated[str, typer.Argument(help="Suite name from registry.toml.")] = DEFAULT_SUITE,
    registry: RegistryOption = None,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", help="Seeds overriding the suite's: comma-separated, ranges too, e.g. 0,1,2 or 0-4."),
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
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            envvar="PROBEBENCH_EXECUTOR",
            help="What runs the run's tasks: local (this process) or ray (a Ray cluster; needs the ray extra of "
            "probebench, see docs/cluster.md). The results are the same bytes.",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            envvar="PROBEBENCH_RAY_ADDRESS",
            help="With --executor ray: the cluster, auto (the one `ray start` runs here), HOST:PORT or "
            "ray://HOST:PORT; default: $RAY_ADDRESS, else a new Ray on this machine.",
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="Metrics of the printed summary (repeatable or comma-separated; when the suite has them); all are "
            f"in results.csv and `probebench leaderboard`. 'all' shows every one. Default: {SUMMARY_METRICS}.",
            show_default=False,
        ),
    ] = None,
    show: Annotated[str | None, typer.Option("--show", hidden=True, help="Deprecated: use --metric.")] = None,
    as_json: JsonOption = False,
    log: Annotated[
        list[str] | None,
        typer.Option(
            "--log",
            help="Also log the finished run to this logger (`probebench ls loggers`), e.g. mlflow; "
            "repeat for several; added to the suite's 'log' list.",
        ),
    ] = None,
) -> None:
    """Run a benchmark suite: train, score, evaluate, and write results/<run-id>/."""
    from probebench.cache import ArtifactStore
    from probebench.executors import executor_for
    from probebench.suite import parse_suite

    chosen_executor = executor_for(executor, address, fresh=fresh)
    config, reg = load(ctx, registry)
    resolved = parse_suite(config, suite, reg, seeds=_seeds(seeds), data_root=data_root)
    for name in log or []:
        reg.get("logger", name)  # an unknown logger fails before anything runs

    from probebench.cache import suite_user
    from probebench.console import console
    from probebench.paths import write_run_folder
    from probebench.pipeline.run import resolve_device, run_suite
    from probebench.results import config_hash

    user = suite_user(resolved.name, config_hash(resolved.as_dict()))  # cache ls / gc --unreachable read its uses
    store, chosen_device = ArtifactStore(cache_dir, fresh=fresh, user=user), resolve_device(device)
    target, outcome = write_run_folder(
        out,
        resolved.name,
        lambda partial: run_suite(resolved, reg, store, chosen_device, partial, chosen_executor),
        overwrite,
        results_root=default_results_dir(),
    )
    chosen = split_list(metric or []) or split_list([deprecated_alias("--show", "--metric", show) or SUMMARY_METRICS])
    show_summary(target, None if chosen == ["all"] else chosen, as_json=as_json, failures=outcome.failures)
    from probebench.loggers import log_run, merged

    log_run(reg, merged(resolved.log, log or []), target)
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


def show_summary(
    run_dir: Path, metrics: list[str] | None = None, as_json: bool = False, failures: list[dict] | None = None
) -> None:
    """Print the run's main tables (clean test data, methods x ``metrics``),
    or with ``as_json`` one JSON document: run, run_id, suite, status, seeds,
    failures, tables (as `leaderboard --json`) and metrics."""
    from probebench import results
    from probebench.cli.leaderboard import json_document
    from probebench.report.tables import render_sections, to_json

    sections, head = summary_sections(run_dir, metrics)
    directions, scales = results.directions(head), results.scales(head)
    if as_json:
        body = {
            "run": str(run_dir),
            "run_id": run_dir.name,
            "suite": head["suite"]["name"],
            "status": results.run_status(head),
            "seeds": head["suite"].get("seeds", []),
            "failures": failures or [],
            "tables": to_json(sections, directions),
        }
        typer.echo(json_document(body, directions, scales), nl=False)
        return
    print_tables(render_sections(sections, directions, "table", scales))
    from probebench.console import console

    console.print(f"results: {run_dir}  (every metric: probebench leaderboard {run_dir})", soft_wrap=True)


def summary_sections(run_dir: Path, metrics: list[str] | None = None) -> tuple[list[Section], Header]:
    """The tables of a run's summary: per dataset and classifier, the
    classifier's accuracy, then one table per set of metrics (scorers,
    correctors), generators last; clean test data only."""
    from probebench import results
    from probebench.evaluate import CLASSIFIER_METHOD
    from probebench.pipeline.generate import CLASSIFIER as NO_CLASSIFIER  # torch is loaded by now: a run just ended
    from probebench.report.tables import Section

    table, head = results.load_run(run_dir)
    if metrics is not None:
        table = table[table["metric"].isin(metrics) | (table["method"] == CLASSIFIER_METHOD)]
    out: list[Section] = []
    clean = table[table["corruption"] == results.CLEAN]
    groups = list(clean.groupby(["dataset", "classifier"], sort=False))
    groups.sort(key=lambda group: group[0][1] == NO_CLASSIFIER)  # generator rows (no classifier) last
    for (dataset, classifier), part in groups:
        acc = part[part["method"] == CLASSIFIER_METHOD]
        what = f"{dataset} / {classifier}" if classifier != NO_CLASSIFIER else f"{dataset} generators"
        title = f"{head['suite']['name']}: {what}, clean test, seeds {sorted(part['seed'].unique().tolist())}"
        methods = part[part["method"] != CLASSIFIER_METHOD]
        if len(acc):
            out.append(Section.of(title, results.pivot_fields(acc, ["dataset"], ["metric"])))
            title = ""
        # one table per set of metrics, so correctors are not shown beside scorers' empty columns
        blocks: dict[frozenset, list] = {}
        for method, metric_names in methods.groupby("method", sort=False)["metric"]:
            blocks.setdefault(frozenset(metric_names), []).append(method)
        for names in blocks.values():
            out.append(
                Section.of(title, results.pivot_fields(methods[methods["method"].isin(names)], ["method"], ["metric"]))
            )
            title = ""
    return out, head


def register(app: typer.Typer) -> None:
    app.command("run")(run)
