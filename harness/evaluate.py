"""Apply metric plugins to one cell's per-sample confidences, with percentile
bootstrap intervals over test samples.

The resample indices are drawn once per cell and shared by every method and
metric, and metrics are evaluated on all resamples at once ([B, N] arrays), so
1,000 resamples cost a few vectorised calls rather than 1,000 Python ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSIFIER_METHOD = "-"  # the method column of rows that describe the classifier alone


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    n: int


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def estimate(metric, confidence: np.ndarray, hit: np.ndarray, indices: np.ndarray, level: float) -> Estimate:
    """``metric`` on the full sample, and its percentile interval over ``indices``."""
    value = float(metric(confidence, hit))
    if len(indices) == 0 or not np.isfinite(value):
        return Estimate(value, float("nan"), float("nan"), len(hit))
    samples = np.asarray(metric(confidence[indices], hit[indices]), dtype=float)
    samples = samples[np.isfinite(samples)]  # a resample with no miss has no AUROC
    if len(samples) == 0:
        return Estimate(value, float("nan"), float("nan"), len(hit))
    alpha = (1 - level) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return Estimate(value, float(low), float(high), len(hit))


def evaluate_cell(
    confidences: dict[str, np.ndarray], hit: np.ndarray, metrics: dict[str, object], bootstrap
) -> list[dict]:
    """Rows ``{method, metric, value, ci_low, ci_high, n}`` for one cell.

    Metrics with ``needs_confidence = False`` (accuracy) describe the classifier
    and appear once, with method ``-``. Non-finite confidences never enter a
    metric: the caller records such a method as failed instead.
    """
    hit = np.asarray(hit, dtype=bool)
    indices = bootstrap_indices(len(hit), bootstrap.resamples, bootstrap.seed)
    rows = []
    for metric_name, metric in metrics.items():
        if not getattr(metric, "needs_confidence", True):
            est = estimate(metric, np.zeros(len(hit)), hit, indices, bootstrap.confidence)
            rows.append({"method": CLASSIFIER_METHOD, "metric": metric_name, **est.__dict__})
            continue
        for method, confidence in confidences.items():
            est = estimate(metric, np.asarray(confidence, dtype=float), hit, indices, bootstrap.confidence)
            rows.append({"method": method, "metric": metric_name, **est.__dict__})
    return rows
