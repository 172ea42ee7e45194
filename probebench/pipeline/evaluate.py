"""Evaluate stage: labels judge what the other stages did, as tidy rows.

``detection_rows``: every metric plugin on every scorer's confidences of a
cell (miss detection), plus the cell's per-sample frame for scores.csv.gz.
``outcome_rows``: the correction metrics of one corrector on one cell (see
``probebench/pipeline/correct.py``, "What the stage measures"). The
statistics (bootstrap intervals) are ``probebench.evaluate``'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from probebench.cache import content_digest, hash_key
from probebench.evaluate import REPLICATES, bootstrap_indices, estimate, evaluate_cell, without_replicates
from probebench.pipeline.cells import Cell
from probebench.pipeline.stage import Run

if TYPE_CHECKING:
    import pandas as pd

    from probebench.cache import ArtifactStore
    from probebench.pipeline.score import Scored
    from probebench.suite import Bootstrap

# metric name -> higher is better
CORRECTION_METRICS = {
    "correction-rate": True,
    "break-rate": False,
    "net-accuracy-gain": True,
    "tuned-net-accuracy-gain": True,
    "correction-rate-flagged": True,
    "break-rate-flagged": False,
    "loop-accuracy": True,
    "abstain-selective-accuracy": True,
    "abstain-coverage": True,
    "edit-size": False,
    "median-steps": False,
    "p90-steps": False,
    "images-per-second": True,
}


# The row of the new-class cell that says whether a scorer ranks unseen-class
# images below hits: AUROC of hits (positive) against held-out-class images,
# the cell's other misses left out (the auroc metric on that subset).
NEW_CLASS_AUROC = "new-class-auroc"
ROWS_FORMAT = "rows+replicates"  # what an ``evaluated`` artifact holds (in its key)


def per_sample_column(metric: str) -> str:
    """The scores-file column of a ``needs_probabilities`` metric's per-sample values."""
    return f"{metric}:per-sample"


def detection_rows(run: Run, seed: int, cell: Cell, scored: Scored) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """(tidy rows, per-sample frame) of one cell's ``Scored`` predictions and confidences."""
    import pandas as pd

    suite = run.suite
    keys = cell.columns(suite, seed)
    hit, labels = scored.hit, scored.labels
    metrics = {m: run.registry.create("metric", m) for m in suite.metrics}
    per_sample = {}
    if scored.probabilities is not None:
        per_sample = {
            name: np.asarray(m.per_sample(scored.probabilities, labels.numpy()), dtype=float)
            for name, m in metrics.items()
            if getattr(m, "needs_probabilities", False)
        }

    def evaluate() -> dict[str, Any]:
        rows = evaluate_cell(scored.confidences, hit, metrics, suite.bootstrap, per_sample)
        if scored.unseen is not None and scored.unseen.any():
            rows += new_class_rows(run, scored)
        return {"rows": [_stored(row) for row in rows]}

    evaluated = run.store.get_or_build("evaluated", evaluated_key(run, scored, per_sample), evaluate)
    rows = [{**keys, **_loaded(row)} for row in evaluated["rows"]]
    frame = pd.DataFrame(
        {
            **keys,
            "index": np.arange(len(labels)),
            "label": labels.numpy(),
            "prediction": scored.predictions.numpy(),
            "hit": hit.astype(int),
        }
    )
    for spec in suite.scorers:
        frame[spec.label] = scored.confidences.get(spec.label, np.full(len(labels), np.nan))
    for name, values in per_sample.items():  # the classifier's per-sample losses that the NLL/Brier rows average
        frame[per_sample_column(name)] = values
    return rows, frame


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` as an artifact holds it: its replicates as a tensor (artifacts load
    with ``weights_only``, which reads tensors, not numpy arrays)."""
    import torch

    replicates = row.get(REPLICATES)
    return {**row, REPLICATES: None if replicates is None else torch.from_numpy(np.asarray(replicates, dtype=float))}


def _loaded(row: dict[str, Any]) -> dict[str, Any]:
    replicates = row.get(REPLICATES)
    return {**row, REPLICATES: None if replicates is None else replicates.numpy()}


def new_class_rows(run: Run, scored: Scored) -> list[dict[str, Any]]:
    """``NEW_CLASS_AUROC`` rows of a cell with held-out-class images: each
    scorer's AUROC of hits against those images (1: every unseen-class image
    ranked below every hit; 0.5: no better than chance), with its bootstrap
    interval over the same subset."""
    assert scored.unseen is not None
    keep = scored.hit | scored.unseen
    confidences = {label: values[keep] for label, values in scored.confidences.items()}
    auroc = {NEW_CLASS_AUROC: run.registry.create("metric", "auroc")}
    return evaluate_cell(confidences, scored.hit[keep], auroc, run.suite.bootstrap)


def evaluated_key(run: Run, scored: Scored, per_sample: dict[str, np.ndarray] | None = None) -> str:
    """The cache key of a cell's metric rows: a digest of exactly what
    ``evaluate_cell`` reads (each method's confidences, hit/miss, the
    per-sample losses of probability metrics), the metric
    plugins with their versions, and the bootstrap settings. A warm run then
    skips the bootstrap, and any change to its inputs recomputes it. The rows
    hold each value's bootstrap replicates (``ROWS_FORMAT``: artifacts made
    before they were kept are not reused)."""
    digest = hashlib.sha256(np.ascontiguousarray(scored.hit, dtype=bool).tobytes())
    if scored.unseen is not None:  # the new-class rows read which misses are unseen-class images
        digest.update(b"unseen:" + np.ascontiguousarray(scored.unseen, dtype=bool).tobytes())
    for label, confidence in scored.confidences.items():
        digest.update(label.encode() + b"\0" + np.ascontiguousarray(confidence, dtype=float).tobytes())
    for name, values in sorted((per_sample or {}).items()):
        digest.update(b"per-sample:" + name.encode() + b"\0" + np.ascontiguousarray(values, dtype=float).tobytes())
    metrics = [
        (m, getattr(run.registry.get("metric", m), "version", "1"), run.registry.entry("metric", m).plugin.version)
        for m in run.suite.metrics
    ]
    parts = (digest.hexdigest(), list(scored.confidences), metrics, vars(run.suite.bootstrap), ROWS_FORMAT)
    return hash_key("evaluated", *parts)


# -- correction --------------------------------------------------------------------
@dataclass
class Outcome:
    """Per-sample facts of one corrector on one cell (all arrays of length N)."""

    hit: np.ndarray  # the classifier was right on the original image
    hit_after: np.ndarray  # ... and on the edited image
    flagged: np.ndarray  # the prober flagged the original (P(hit) < threshold)
    edit_size: np.ndarray  # ||x' - x||_2
    steps: np.ndarray
    seconds: float
    tuned_flagged: np.ndarray | None = None  # flagged with the corrector's validation-tuned threshold


def loop_gain_per_sample(hit: Any, hit_after: Any, flagged: Any) -> np.ndarray:
    """+1 where the loop turns a miss into a hit, -1 where it breaks a hit, else 0."""
    hit = np.asarray(hit, dtype=bool)
    after = np.where(np.asarray(flagged, dtype=bool), np.asarray(hit_after, dtype=bool), hit)
    return after.astype(float) - hit.astype(float)


def _mean(values: np.ndarray, _unused: object = None) -> np.ndarray:
    return np.mean(values, axis=-1)


def _row(metric: str, values: np.ndarray, bootstrap: Bootstrap, value: float | None = None) -> dict[str, Any]:
    """The mean of ``values`` with a bootstrap interval, or ``value`` without one."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return {"metric": metric, "value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    if value is not None:
        return {
            "metric": metric,
            "value": float(value),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "n": len(values),
        }
    indices = bootstrap_indices(len(values), bootstrap.resamples, bootstrap.seed)
    est = estimate(_mean, values, values, indices, bootstrap.confidence)
    return {"metric": metric, **without_replicates(est.row())}


def outcome_rows(outcome: Outcome, bootstrap: Bootstrap) -> list[dict[str, Any]]:
    """Rows ``{metric, value, ci_low, ci_high, n}`` of the correction metrics."""
    hit = np.asarray(outcome.hit, dtype=bool)
    after = np.asarray(outcome.hit_after, dtype=bool)
    miss = ~hit
    flagged = np.asarray(outcome.flagged, dtype=bool)
    steps = np.asarray(outcome.steps, dtype=float)[miss]
    n = len(hit)
    speed = n / outcome.seconds if outcome.seconds > 0 else float("nan")
    return [
        _row("correction-rate", after[miss], bootstrap),
        _row("break-rate", ~after[hit], bootstrap),
        _row("net-accuracy-gain", loop_gain_per_sample(hit, after, outcome.flagged), bootstrap),
        *(
            [_row("tuned-net-accuracy-gain", loop_gain_per_sample(hit, after, outcome.tuned_flagged), bootstrap)]
            if outcome.tuned_flagged is not None
            else []
        ),
        _row("correction-rate-flagged", after[miss & flagged], bootstrap),
        _row("break-rate-flagged", ~after[hit & flagged], bootstrap),
        _row("loop-accuracy", np.where(flagged, after, hit), bootstrap),
        _row("abstain-selective-accuracy", hit[~flagged], bootstrap),
        _row("abstain-coverage", ~flagged, bootstrap),
        _row("edit-size", np.asarray(outcome.edit_size, dtype=float)[miss], bootstrap),
        _row("median-steps", steps, bootstrap, value=np.median(steps) if len(steps) else None),
        _row("p90-steps", steps, bootstrap, value=np.percentile(steps, 90) if len(steps) else None),
        _row("images-per-second", np.ones(n), bootstrap, value=speed),
    ]


def cached_outcome_rows(store: ArtifactStore | None, outcome: Outcome, bootstrap: Bootstrap) -> list[dict[str, Any]]:
    """``outcome_rows``, cached in ``store`` under a digest of every per-sample
    array of ``outcome``, its seconds, the bootstrap settings and the package
    version (which the correction metrics' code belongs to): a warm run
    resamples nothing."""
    if store is None:
        return outcome_rows(outcome, bootstrap)
    from probebench import __version__

    tuned = outcome.tuned_flagged
    arrays = [outcome.hit, outcome.hit_after, outcome.flagged, outcome.edit_size, outcome.steps]
    digest = content_digest(*arrays, *([] if tuned is None else [tuned]))
    key = hash_key("outcome-rows", digest, tuned is None, outcome.seconds, vars(bootstrap), __version__)
    return store.get_or_build("evaluated", key, lambda: {"rows": outcome_rows(outcome, bootstrap)})["rows"]
