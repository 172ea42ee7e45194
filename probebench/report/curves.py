"""The curves behind the failure-detection metrics, from per-sample scores.

Pure numpy, tie-aware in the same way as the metrics: a curve gets one point
per distinct confidence (tied samples are flagged or accepted together).
Confidence is "higher = more confident the prediction is right"; a *miss* is
the positive class of detection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

Array = np.ndarray


def _groups_ascending(confidence: ArrayLike, hit: ArrayLike) -> tuple[Array, Array, Array]:
    """Cumulative misses and hits at the last sample of each tied group, from
    the least confident up."""
    confidence = np.asarray(confidence, dtype=float)
    miss = ~np.asarray(hit, dtype=bool)
    order = np.argsort(confidence, kind="stable")
    score, miss = confidence[order], miss[order]
    last = np.r_[score[1:] != score[:-1], True]
    tp = np.cumsum(miss)[last]
    fp = np.cumsum(~miss)[last]
    return score[last], tp, fp


def roc(confidence: ArrayLike, hit: ArrayLike) -> tuple[Array, Array]:
    """(fpr, tpr): hits flagged vs misses flagged as the threshold rises from
    flagging nothing to flagging everything."""
    _, tp, fp = _groups_ascending(confidence, hit)
    misses, hits = tp[-1], fp[-1]
    tpr = np.r_[0.0, tp / misses] if misses else np.r_[0.0, np.zeros_like(tp, dtype=float)]
    fpr = np.r_[0.0, fp / hits] if hits else np.r_[0.0, np.zeros_like(fp, dtype=float)]
    return fpr, tpr


def risk_coverage(confidence: ArrayLike, hit: ArrayLike) -> tuple[Array, Array]:
    """(coverage, risk): accepting the most confident samples first, the miss
    rate among those accepted, at every distinct confidence (coverage 1/N..1)."""
    _score, tp, fp = _groups_ascending(confidence, hit)
    n = tp[-1] + fp[-1]
    misses = tp[-1]
    # accepting every sample at or above a group's score: counts from that group up
    below_tp = np.r_[0, tp[:-1]]
    below_n = np.r_[0, (tp + fp)[:-1]]
    accepted = n - below_n
    risk = (misses - below_tp) / accepted
    return (accepted / n)[::-1], risk[::-1]


def oracle_risk_coverage(hit: ArrayLike) -> tuple[Array, Array]:
    """The risk-coverage curve of a perfect score (every hit accepted first)."""
    hit = np.asarray(hit, dtype=bool)
    n, hits = len(hit), int(hit.sum())
    k = np.arange(1, n + 1)
    return k / n, np.maximum(k - hits, 0) / k


def accuracy_vs_percentile(
    confidence: ArrayLike, hit: ArrayLike, percentiles: ArrayLike | None = None
) -> tuple[Array, Array]:
    """(percentiles, accuracy): GradTrust's curve. For each p, the accuracy of
    the samples left after removing the p% least confident (ties at the cut
    kept together, so the kept share may exceed 100 - p%)."""
    confidence = np.asarray(confidence, dtype=float)
    hit = np.asarray(hit, dtype=bool)
    percentiles = np.arange(0, 100) if percentiles is None else np.asarray(percentiles)
    order = np.argsort(-confidence, kind="stable")
    score, correct = confidence[order], np.cumsum(hit[order])
    n = len(score)
    acc = []
    for p in percentiles:
        keep = max(1, int(np.ceil(n * (1 - p / 100))))
        keep = int(np.searchsorted(-score, -score[keep - 1], side="right"))  # include ties at the cut
        acc.append(correct[keep - 1] / keep)
    return percentiles, np.array(acc)


def reliability(confidence: ArrayLike, hit: ArrayLike, bins: int = 15) -> tuple[Array, Array, Array, Array]:
    """Per equal-width bin (lo, hi] of confidence in [0, 1]: (centres, accuracy,
    mean confidence, count); empty bins are NaN with count 0."""
    confidence = np.asarray(confidence, dtype=float)
    hit = np.asarray(hit, dtype=float)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=hit, minlength=bins) / count
        mean_conf = np.bincount(index, weights=confidence, minlength=bins) / count
    centres = (np.arange(bins) + 0.5) / bins
    return centres, accuracy, mean_conf, count


def is_probability(confidence: ArrayLike) -> bool:
    """Whether every confidence lies in [0, 1] (the test ECE uses too)."""
    confidence = np.asarray(confidence, dtype=float)
    return bool(len(confidence)) and bool(((confidence >= 0) & (confidence <= 1)).all())
