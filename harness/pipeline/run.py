"""Run a suite: every (seed x test cell x method) through the stages, into tidy rows.

A test cell is the clean test split or one (corruption, severity) of it. A
component that raises, or returns scores of the wrong shape or with NaN, fails
only its own cells: the failure is recorded and the run goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness import results
from harness.cache import ArtifactStore, hash_key
from harness.console import console, task
from harness.errors import UserError
from harness.evaluate import evaluate_cell
from harness.pipeline.context import Batch, Context
from harness.pipeline.data import corrupt, load_splits
from harness.pipeline.generate import METRICS as GENERATOR_METRICS
from harness.pipeline.generate import generator_stage
from harness.pipeline.train import trained_classifier
from harness.suite import Suite


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
    run_header["metrics"] = {name: {"higher_is_better": bool(m.higher_is_better)} for name, m in metrics.items()}
    if suite.generators:
        run_header["metrics"].update(GENERATOR_METRICS)

    splits = load_splits(registry, suite.dataset, suite.data_root)
    outcome = RunOutcome(out, [])
    samples = []
    for seed in suite.seeds:
        ctx = _context(suite, registry, store, splits, seed, device)
        outcome.rows += generator_stage(suite, registry, store, splits, ctx, out, outcome.failures, _failure)
        scorers = _prepared_scorers(suite, registry, ctx, outcome.failures)
        cells = _cells(suite)
        with task(f"score seed {seed}", len(cells)) as advance:
            for corruption, severity in cells:
                rows, frame = _score_cell(suite, registry, ctx, scorers, splits, corruption, severity, outcome.failures)
                outcome.rows += rows
                samples.append(frame)
                advance()

    import pandas as pd

    run_header["finished"] = results.now()
    run_header["seconds"] = round(time.time() - started, 2)
    run_header["failures"] = outcome.failures
    results.write_run(out, outcome.rows, run_header, pd.concat(samples, ignore_index=True) if samples else None)
    return outcome


def _context(suite, registry, store, splits, seed: int, device) -> Context:
    def train_other(other_seed: int) -> torch.nn.Module:
        return trained_classifier(registry, store, suite.dataset, suite.classifier, splits, other_seed, device)[0]

    model, key = trained_classifier(registry, store, suite.dataset, suite.classifier, splits, seed, device)

    def artifact(stage: str, parts, build):
        return store.get_or_build(stage, hash_key(stage, key, parts), build)

    dataset = splits.dataset
    return Context(model, key, dataset.num_classes, tuple(dataset.shape), device, seed, suite.batch_size,
                   splits.train_images, splits.train_labels, artifact, train_other)


def _failure(failures: list, kind: str, label: str, stage: str, cell: str, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"
    failures.append({"kind": kind, "plugin": label, "stage": stage, "cell": cell, "message": message})
    console.print(f"[red]{kind} {label!r} failed in {stage} ({cell}): {message}[/]")


def _prepared_scorers(suite, registry, ctx, failures) -> dict:
    scorers = {}
    for spec in suite.scorers:
        try:
            scorer = registry.create("scorer", spec.name, spec.options)
            if hasattr(scorer, "prepare"):
                torch.manual_seed(ctx.seed)
                scorer.prepare(ctx)
        except UserError:
            raise
        except Exception as exc:
            _failure(failures, "scorer", spec.label, "prepare", f"seed={ctx.seed}", exc)
            continue
        scorers[spec.label] = scorer
    return scorers


def _cells(suite) -> list[tuple]:
    cells = [(None, 0)] if suite.clean else []
    for spec in suite.corruptions:
        cells += [(spec, severity) for severity in spec.severities]
    return cells


def _score_cell(suite, registry, ctx, scorers, splits, corruption, severity, failures):
    import pandas as pd

    name = corruption.name if corruption else results.CLEAN
    images = splits.test_images
    if corruption is not None:
        images = corrupt(registry, corruption, images, severity, ctx.seed)
    batch = Batch(ctx, images)
    labels = splits.test_labels
    hit = (batch.predictions == labels).numpy()
    cell = f"seed={ctx.seed} corruption={name} severity={severity}"

    confidences = {}
    for label, scorer in scorers.items():
        try:
            torch.manual_seed(ctx.seed)
            confidences[label] = check_scores(scorer.score(ctx, batch), len(labels))
        except UserError:
            raise
        except Exception as exc:
            _failure(failures, "scorer", label, "score", cell, exc)

    keys = {"suite": suite.name, "dataset": suite.dataset.label, "corruption": name, "severity": severity,
            "classifier": suite.classifier.label, "seed": ctx.seed}
    metrics = {m: registry.create("metric", m) for m in suite.metrics}
    rows = [{**keys, **row} for row in evaluate_cell(confidences, hit, metrics, suite.bootstrap)]
    frame = pd.DataFrame({**keys, "index": np.arange(len(labels)), "label": labels.numpy(),
                          "prediction": batch.predictions.numpy(), "hit": hit.astype(int)})
    for label in scorers:
        frame[label] = confidences.get(label, np.full(len(labels), np.nan))
    return rows, frame
