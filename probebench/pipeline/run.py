"""Run a suite: every (seed x test cell x method) through the stages, into tidy rows.

Per seed: train (or load) the classifier, then the generators; per test cell
(``cells.py``): score, evaluate, and correct when the suite has correctors. A
component that raises, or returns scores of the wrong shape or with NaN, fails
only its own cells: the failure is recorded and the run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from probebench import results
from probebench.cache import ArtifactStore, hash_key
from probebench.console import task
from probebench.errors import UserError
from probebench.evaluate import check_bootstrap_memory
from probebench.pipeline import correct as correction
from probebench.pipeline.cells import suite_cells
from probebench.pipeline.context import Context
from probebench.pipeline.data import load_splits
from probebench.pipeline.evaluate import CORRECTION_METRICS, detection_rows
from probebench.pipeline.generate import METRICS as GENERATOR_METRICS
from probebench.pipeline.generate import TrainedFlow, generator_stage
from probebench.pipeline.score import Scorer, score_cell
from probebench.pipeline.stage import Run
from probebench.pipeline.train import save_classifier_figures, trained_classifier
from probebench.suite import Suite

if TYPE_CHECKING:
    import pandas as pd

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


def run_suite(suite: Suite, registry: Registry, store: ArtifactStore, device: torch.device, out: Path) -> RunOutcome:
    """Run ``suite`` into ``out`` (a run's partial folder, see ``probebench.paths``).

    ``run.json`` is written first with ``status: running``; it ends as
    ``finished``, ``failed`` (component failures, or the error that stopped
    the run) or ``interrupted`` (Ctrl-C), as MLflow records a run's status.
    """
    results.ensure_writable(out)
    started = time.time()
    run_header = _header(suite, registry, device)
    results.write_status(out, run_header, results.RUNNING)
    rows: list[dict[str, Any]] = []
    samples: list[pd.DataFrame] = []
    try:
        with store.active():  # datasets keep their own cached files under the same cache
            splits = load_splits(registry, suite.dataset, suite.data_root, suite.validation)
            check_bootstrap_memory(suite.bootstrap, len(splits.test_labels), len(suite.metrics))
            run_header["data"] = splits.data  # which data produced the numbers, as dvc.lock records
            run = Run(suite, registry, store, splits, out)
            for seed in suite.seeds:
                rows += _run_seed(run, seed, device, run_header, samples)
    except KeyboardInterrupt:
        results.write_status(out, run_header, results.INTERRUPTED)
        raise
    except Exception as exc:
        results.write_status(out, run_header, results.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise

    import pandas as pd

    run_header["finished"] = results.now()
    run_header["seconds"] = round(time.time() - started, 2)
    run_header["failures"] = run.failures.entries
    run_header["status"] = results.FAILED if run.failures.entries else results.FINISHED
    results.write_run(out, rows, run_header, pd.concat(samples, ignore_index=True) if samples else None)
    return RunOutcome(out, rows, run.failures.entries)


def _header(suite: Suite, registry: Registry, device: torch.device) -> dict[str, Any]:
    """The run header before anything runs: the suite, the machine, and each metric's direction."""
    header = results.header(suite.as_dict(), str(device), results.now())
    metrics = {name: registry.create("metric", name) for name in suite.metrics}
    header["metrics"] = results.metric_directions(metrics)
    if suite.correctors:
        header["metrics"].update({k: {"higher_is_better": v, "scale": 1} for k, v in CORRECTION_METRICS.items()})
    if suite.generators:
        header["metrics"].update(GENERATOR_METRICS)
    return header


def _run_seed(
    run: Run, seed: int, device: torch.device, run_header: dict[str, Any], samples: list[pd.DataFrame]
) -> list[dict[str, Any]]:
    """The rows of one seed; its per-sample frames go to ``samples``, what it
    learnt about its components to ``run_header``."""
    ctx = _context(run, seed, device)
    rows, flows = generator_stage(run, ctx)
    scorers = [Scorer(spec, run.registry, ctx) for spec in run.suite.scorers]
    corrections = _correction_setup(run, ctx, scorers, flows) if run.suite.correctors else None
    if corrections is not None:

        def on_failure(label: str, exc: Exception) -> None:
            run.failures.record("corrector", label, "tune", f"seed={seed} validation", exc)

        correction.tune(ctx, corrections, run.store, on_failure=on_failure)
        run_header.setdefault("correction", {})[str(seed)] = corrections.calibration()
    cells = suite_cells(run.suite, run.splits.cells)
    probabilities = any(getattr(run.registry.get("metric", m), "needs_probabilities", False) for m in run.suite.metrics)
    with task(f"score seed {seed}", len(cells)) as advance:
        for cell in cells:
            scored = score_cell(run, ctx, scorers, cell, probabilities=probabilities)
            cell_rows, frame = detection_rows(run, seed, cell, scored)
            rows += cell_rows
            samples.append(frame)
            if corrections is not None:
                rows += correction.correct_cell(run, ctx, corrections, cell)
            advance()
    facts = {s.spec.label: s.facts for s in scorers if s.facts}
    if facts:  # what a component learnt about itself in prepare (e.g. a prober's training data)
        run_header.setdefault("component_facts", {})[str(seed)] = facts
    return rows


def _context(run: Run, seed: int, device: torch.device) -> Context:
    suite, splits = run.suite, run.splits

    def train_other(
        other_seed: int, subset: torch.Tensor | None = None, options: dict[str, Any] | None = None
    ) -> torch.nn.Module:
        spec = suite.classifier
        if options:
            spec = replace(spec, options={**spec.options, **options})
        return trained_classifier(run.registry, run.store, suite.dataset, spec, splits, other_seed, device, subset)[0]

    model, key = trained_classifier(run.registry, run.store, suite.dataset, suite.classifier, splits, seed, device)
    save_classifier_figures(run, model, key, seed)

    def artifact(
        stage: str, parts: Any, build: Callable[[], dict[str, Any]], check: Callable[[dict], object] | None = None
    ) -> dict[str, Any]:
        return run.store.get_or_build(stage, hash_key(stage, key, parts), build, check)

    dataset = splits.dataset
    return Context(
        model,
        key,
        dataset.num_classes,
        tuple(dataset.shape),
        device,
        seed,
        suite.batch_size,
        splits.train_images,
        splits.train_labels,
        artifact,
        train_other,
        registry=run.registry,
        val_images=splits.val_images,
        val_labels=splits.val_labels,
    )


def _correction_setup(
    run: Run, ctx: Context, scorers: list[Scorer], flows: dict[str, TrainedFlow]
) -> correction.Setup | None:
    """Prepare the scorers that can guide correctors (``probebench.kinds.Guide``)
    and set the correctors up; None, with the failures recorded, when no guide
    or no flow survived."""
    probers = {}
    for scorer in scorers:
        instance = scorer.prepared(run.failures) if scorer.guides else None
        if instance is not None:
            probers[scorer.spec.label] = correction.Guide(instance.p_hit, scorer.key)
    if not probers or (not flows and correction.needs_generators(run.suite.correctors, run.registry)):
        for spec in run.suite.correctors:
            run.failures.record(
                "corrector",
                spec.label,
                "setup",
                f"seed={ctx.seed}",
                RuntimeError("its prober or generator failed earlier in this run (see above)"),
            )
        return None
    return correction.setup(run.suite.correctors, run.registry, ctx, flows, probers)
