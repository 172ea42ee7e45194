"""Run a suite (or several): load its data, build its graph of stage tasks
(``graph.py``; several suites' graphs combined into one, ``combined.py``),
hand the graph to an executor, and write each run folder.

A component that raises, or returns scores of the wrong shape or with NaN,
fails only its own cells: the failure is recorded and the run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from probebench import results
from probebench.cache import ArtifactStore
from probebench.errors import UserError
from probebench.evaluate import check_bootstrap_memory
from probebench.executors.local import LocalExecutor
from probebench.pipeline import active as learning
from probebench.pipeline.combined import combine
from probebench.pipeline.data import load_splits
from probebench.pipeline.evaluate import CORRECTION_METRICS, NEW_CLASS_AUROC
from probebench.pipeline.generate import METRICS as GENERATOR_METRICS
from probebench.pipeline.graph import Graph, build_graph
from probebench.pipeline.stage import Run
from probebench.provenance import plugin_provenance
from probebench.suite import Suite

if TYPE_CHECKING:
    from probebench.executors import Executor
    from probebench.registry import Registry


@dataclass
class RunOutcome:
    out: Path
    rows: list[dict]
    failures: list[dict] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' is not available on this machine; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; use cpu, cuda or auto")
    return torch.device(name)


def run_suite(
    suite: Suite,
    registry: Registry,
    store: ArtifactStore,
    device: torch.device,
    out: Path,
    executor: Executor | None = None,
) -> RunOutcome:
    """Run ``suite`` into ``out`` (a run's partial folder, see ``probebench.paths``).

    ``run.json`` is written first with ``status: running``; it ends as
    ``finished``, ``failed`` (component failures, or the error that stopped
    the run) or ``interrupted`` (Ctrl-C), as MLflow records a run's status.
    ``executor`` runs the graph (default: ``LocalExecutor``, in this process).
    """
    return run_suites([SuiteRun(suite, registry, store, out)], device, executor)[0]


@dataclass
class SuiteRun:
    """One suite to run into its own (partial) folder ``out``."""

    suite: Suite
    registry: Registry
    store: ArtifactStore
    out: Path


@dataclass
class _Started:
    """A suite's run whose header is written and graph built, before the graph runs."""

    header: dict[str, Any]
    run: Run
    graph: Graph


def run_suites(jobs: Sequence[SuiteRun], device: torch.device, executor: Executor | None = None) -> list[RunOutcome]:
    """Run every suite of ``jobs`` as one graph (``combined.py``), each into its own folder, as ``run_suite`` does.

    An error that stops the graph (or Ctrl-C) marks every suite's run.json
    ``failed`` (``interrupted``); a component failure fails only its own
    cells of its own suite."""
    from probebench.allocator import reuse_freed_memory

    began = time.time()
    reuse_freed_memory()  # training loops then stop faulting their buffers back in every step
    started: list[_Started] = []
    try:
        for job in jobs:
            started.append(_start(job, device))
        graph = combine([s.graph for s in started], [job.suite.name for job in jobs])
        chosen: Executor = executor or LocalExecutor()
        collected = chosen.execute(graph, [s.run for s in started])
    except KeyboardInterrupt:
        for each in started:
            results.write_status(each.run.out, each.header, results.INTERRUPTED)
        raise
    except Exception as exc:
        for each in started:
            results.write_status(each.run.out, each.header, results.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    return [_finish(each, output, began) for each, output in zip(started, collected, strict=True)]


def _start(job: SuiteRun, device: torch.device) -> _Started:
    """Write ``job``'s run.json (running), load its data and build its graph."""
    suite, registry, store, out = job.suite, job.registry, job.store, job.out
    results.ensure_writable(out)
    run_header = _header(suite, registry, device)
    results.write_status(out, run_header, results.RUNNING)
    try:
        with store.active():  # datasets keep their own cached files under the same cache
            pool = suite.active.pool if suite.active else 0
            splits = load_splits(registry, suite.dataset, suite.data_root, suite.validation, pool, suite.new_classes)
            check_bootstrap_memory(suite.bootstrap, len(splits.test_labels), len(suite.metrics))
            run_header["data"] = splits.data  # which data produced the numbers, as dvc.lock records
            run = Run(suite, registry, store, splits, out)
            return _Started(run_header, run, build_graph(run, device))
    except KeyboardInterrupt:
        results.write_status(out, run_header, results.INTERRUPTED)
        raise
    except Exception as exc:
        results.write_status(out, run_header, results.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise


def _finish(started: _Started, collected: Any, began: float) -> RunOutcome:
    """Write the run folder of a suite whose graph ran."""
    import pandas as pd

    run, run_header, out = started.run, started.header, started.run.out
    run_header.update(collected.header)
    if run.suite.active is not None:
        learning.collect(out)
    run_header["finished"] = results.now()
    run_header["seconds"] = round(time.time() - began, 2)
    run_header["failures"] = run.failures.entries
    run_header["status"] = results.FAILED if run.failures.entries else results.FINISHED
    rows, samples = collected.rows, collected.samples
    results.write_run(out, rows, run_header, pd.concat(samples, ignore_index=True) if samples else None)
    return RunOutcome(out, rows, run.failures.entries)


def _header(suite: Suite, registry: Registry, device: torch.device) -> dict[str, Any]:
    """The run header before anything runs: the suite, the machine, and each metric's direction."""
    header = results.header(suite.as_dict(), str(device), results.now())
    header.update(plugin_provenance(suite.as_dict(), registry))  # every component's distribution and version
    metrics = {name: registry.create("metric", name) for name in suite.metrics}
    header["metrics"] = results.metric_directions(metrics)
    if suite.correctors:
        header["metrics"].update({k: {"higher_is_better": v, "scale": 1} for k, v in CORRECTION_METRICS.items()})
    if suite.generators:
        header["metrics"].update(GENERATOR_METRICS)
    if suite.active is not None:
        header["metrics"].update({k: {"higher_is_better": v, "scale": 1} for k, v in learning.METRICS.items()})
    if suite.new_classes:
        header["metrics"][NEW_CLASS_AUROC] = {"higher_is_better": True, "scale": 1}
    return header
