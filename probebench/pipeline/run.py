"""Run a suite: every (seed x test cell x method) through the stages, into tidy rows.

A test cell is the clean test split, one (corruption, severity) of it, or a
pre-corrupted (corruption, severity) test set the dataset ships itself. A
component that raises, or returns scores of the wrong shape or with NaN, fails
only its own cells: the failure is recorded and the run goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from probebench import results
from probebench.cache import ArtifactStore, hash_key
from probebench.console import console, task
from probebench.errors import UserError
from probebench.evaluate import evaluate_cell
from probebench.pipeline import correct as correction
from probebench.pipeline.context import Batch, Context
from probebench.pipeline.data import corrupt, load_cell, load_splits
from probebench.pipeline.generate import METRICS as GENERATOR_METRICS
from probebench.pipeline.generate import generator_stage
from probebench.pipeline.train import trained_classifier
from probebench.suite import Suite


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


def check_scores(scores, n: int) -> np.ndarray:
    """Scores as a finite float array of length ``n``, or a ValueError saying why not."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (n,):
        raise ValueError(f"returned scores of shape {list(scores.shape)}, expected [{n}]")
    bad = int((~np.isfinite(scores)).sum())
    if bad:
        raise ValueError(f"returned {bad} NaN or infinite scores of {n}")
    return scores


def run_suite(suite: Suite, registry, store: ArtifactStore, device: torch.device, out: Path) -> RunOutcome:
    results.ensure_writable(out)
    started = time.time()
    run_header = results.header(suite.as_dict(), str(device), results.now())
    metrics = {name: registry.create("metric", name) for name in suite.metrics}
    run_header["metrics"] = {
        name: {"higher_is_better": bool(m.higher_is_better), "scale": getattr(m, "scale", 1)}
        for name, m in metrics.items()
    }
    if suite.correctors:
        run_header["metrics"].update(
            {k: {"higher_is_better": v, "scale": 1} for k, v in correction.CORRECTION_METRICS.items()}
        )
    if suite.generators:
        run_header["metrics"].update(GENERATOR_METRICS)

    splits = load_splits(registry, suite.dataset, suite.data_root, suite.validation)
    outcome = RunOutcome(out, [])
    samples = []
    for seed in suite.seeds:
        ctx = _context(suite, registry, store, splits, seed, device)
        outcome.rows += generator_stage(suite, registry, store, splits, ctx, out, outcome.failures, _failure)
        scorers = [_Scorer(spec, registry, ctx, outcome.failures) for spec in suite.scorers]
        corrections = None
        if suite.correctors:
            corrections = _correction_setup(suite, registry, ctx, scorers, outcome.failures)
            if corrections is not None:
                correction.tune(
                    ctx,
                    corrections,
                    store,
                    on_failure=lambda label, exc: _failure(
                        outcome.failures, "corrector", label, "tune", f"seed={ctx.seed} validation", exc
                    ),
                )
                run_header.setdefault("correction", {})[str(seed)] = corrections.calibration()
        cells = _cells(suite) + list(splits.cells)
        with task(f"score seed {seed}", len(cells)) as advance:
            for corruption, severity in cells:
                rows, frame = _score_cell(
                    suite, registry, store, ctx, scorers, splits, corruption, severity, outcome.failures
                )
                outcome.rows += rows
                samples.append(frame)
                if corrections is not None:
                    outcome.rows += correction.correct_cell(
                        suite, registry, store, ctx, corrections, splits, corruption, severity, out, outcome.failures
                    )
                advance()
        facts = {s.spec.label: s._instance.facts for s in scorers if getattr(s._instance, "facts", None)}
        if facts:  # what a component learnt about itself in prepare (e.g. a prober's training data)
            run_header.setdefault("component_facts", {})[str(seed)] = facts

    import pandas as pd

    run_header["finished"] = results.now()
    run_header["seconds"] = round(time.time() - started, 2)
    run_header["failures"] = outcome.failures
    results.write_run(out, outcome.rows, run_header, pd.concat(samples, ignore_index=True) if samples else None)
    return outcome


def _context(suite, registry, store, splits, seed: int, device) -> Context:
    def train_other(other_seed: int, subset: torch.Tensor | None = None, options: dict | None = None):
        spec = suite.classifier
        if options:
            spec = replace(spec, options={**spec.options, **options})
        return trained_classifier(registry, store, suite.dataset, spec, splits, other_seed, device, subset)[0]

    model, key = trained_classifier(registry, store, suite.dataset, suite.classifier, splits, seed, device)

    def artifact(stage: str, parts, build):
        return store.get_or_build(stage, hash_key(stage, key, parts), build)

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
        registry=registry,
        val_images=splits.val_images,
        val_labels=splits.val_labels,
    )


def _correction_setup(suite, registry, ctx, scorers, failures):
    """Prepare the suite's probers (they guide the correctors) and set the
    correctors up; None, with the failures recorded, when a prober or flow
    they need failed earlier in the run."""
    probers, keys = ctx.extras.setdefault("probers", {}), ctx.extras.setdefault("prober_keys", {})
    for scorer in scorers:
        if scorer.spec.name != "prober" or scorer.failed:
            continue
        try:
            probers[scorer.spec.label], keys[scorer.spec.label] = scorer.instance(), scorer.key
        except UserError:
            raise
        except Exception as exc:
            scorer.failed = True
            _failure(failures, "scorer", scorer.spec.label, "prepare", f"seed={ctx.seed}", exc)
    if not probers or not correction.generators_of(ctx.extras):
        for spec in suite.correctors:
            _failure(
                failures,
                "corrector",
                spec.label,
                "setup",
                f"seed={ctx.seed}",
                RuntimeError("its prober or generator failed earlier in this run (see above)"),
            )
        return None
    return correction.setup(suite.correctors, registry, ctx)


def _failure(failures: list, kind: str, label: str, stage: str, cell: str, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"
    failures.append({"kind": kind, "plugin": label, "stage": stage, "cell": cell, "message": message})
    console.print(f"[red]{kind} {label!r} failed in {stage} ({cell}): {message}[/]")


class _Scorer:
    """A suite's scorer for one seed, created and prepared only when a cell
    actually needs computing (a fully cached cell costs no preparation)."""

    def __init__(self, spec, registry, ctx, failures):
        self.spec, self.registry, self.ctx, self.failures = spec, registry, ctx, failures
        self.cls = registry.get("scorer", spec.name)
        self.key = hash_key(
            "scores",
            ctx.classifier_key,
            spec.name,
            spec.options,
            getattr(self.cls, "version", "1"),
            registry.entry("scorer", spec.name).plugin.version,
        )
        self._instance = None
        self.failed = False

    def instance(self):
        """The prepared scorer; raises what creating or preparing it raised."""
        if self._instance is None:
            scorer = self.registry.create("scorer", self.spec.name, self.spec.options)
            if hasattr(scorer, "prepare"):
                torch.manual_seed(self.ctx.seed)
                scorer.prepare(self.ctx)
            self._instance = scorer
        return self._instance


def _cells(suite) -> list[tuple]:
    cells = [(None, 0)] if suite.clean else []
    for spec in suite.corruptions:
        cells += [(spec, severity) for severity in spec.severities]
    return cells


def cell_data(registry, splits, corruption, severity, seed, data_root):
    """(images, labels) of a cell; ``corruption`` is None (clean), a suite's
    CorruptionSpec, or the name of a cell the dataset ships."""
    if corruption is None:
        return splits.test_images, splits.test_labels
    if isinstance(corruption, str):
        return load_cell(splits, corruption, severity, data_root)
    return corrupt(registry, corruption, splits.test_images, severity, seed), splits.test_labels


def cell_name(corruption) -> str:
    """The corruption column of a cell: ``none``, a corruption plugin's name, or a dataset cell's."""
    if corruption is None:
        return results.CLEAN
    return corruption if isinstance(corruption, str) else corruption.name


def _cell_key(registry, ctx, corruption, severity) -> str:
    if isinstance(corruption, str):  # a dataset's own cell: the classifier key already names the dataset
        return hash_key(ctx.classifier_key, "dataset-cell", corruption, severity)
    return hash_key(
        ctx.classifier_key,
        corruption.name if corruption else None,
        corruption.options if corruption else None,
        getattr(registry.get("corruption", corruption.name), "version", "1") if corruption else None,
        severity,
    )


def _score_cell(suite, registry, store, ctx, scorers, splits, corruption, severity, failures):
    """Tidy rows and per-sample frame of one cell; each (scorer, cell) score
    vector is cached, so an interrupted run recomputes nothing it finished."""
    import pandas as pd

    name = cell_name(corruption)
    cell = f"seed={ctx.seed} corruption={name} severity={severity}"
    cell_key = _cell_key(registry, ctx, corruption, severity)
    data = batch = None

    def get_data():
        nonlocal data
        if data is None:
            data = cell_data(registry, splits, corruption, severity, ctx.seed, suite.data_root)
        return data

    def get_batch() -> Batch:
        nonlocal batch
        if batch is None:
            batch = Batch(ctx, get_data()[0], cell={"split": "test", "cell": cell_key})
        return batch

    cached = store.get_or_build(
        "predictions", cell_key, lambda: {"predictions": get_batch().predictions, "labels": get_data()[1]}
    )
    predictions = cached["predictions"]
    labels = cached.get("labels", splits.test_labels)  # entries cached before labels were stored
    hit = (predictions == labels).numpy()

    confidences = {}
    for scorer in scorers:
        label = scorer.spec.label
        if scorer.failed:
            continue
        key = hash_key(scorer.key, cell_key)
        cached = store.load("scores", key)
        if cached is not None:
            confidences[label] = cached["scores"].numpy()
            continue
        try:
            instance = scorer.instance()
        except UserError:
            raise
        except Exception as exc:
            scorer.failed = True  # preparation failed: every cell of this seed would fail the same way
            _failure(failures, "scorer", label, "prepare", f"seed={ctx.seed}", exc)
            continue
        try:
            torch.manual_seed(ctx.seed)
            scores = check_scores(instance.score(ctx, get_batch()), len(labels))
        except UserError:
            raise
        except Exception as exc:
            _failure(failures, "scorer", label, "score", cell, exc)
            continue
        store.save("scores", key, {"scores": torch.from_numpy(scores)})
        confidences[label] = scores

    keys = {
        "suite": suite.name,
        "dataset": suite.dataset.label,
        "corruption": name,
        "severity": severity,
        "classifier": suite.classifier.label,
        "seed": ctx.seed,
    }
    metrics = {m: registry.create("metric", m) for m in suite.metrics}
    rows = [{**keys, **row} for row in evaluate_cell(confidences, hit, metrics, suite.bootstrap)]
    frame = pd.DataFrame(
        {
            **keys,
            "index": np.arange(len(labels)),
            "label": labels.numpy(),
            "prediction": predictions.numpy(),
            "hit": hit.astype(int),
        }
    )
    for scorer in scorers:
        label = scorer.spec.label
        frame[label] = confidences.get(label, np.full(len(labels), np.nan))
    return rows, frame
