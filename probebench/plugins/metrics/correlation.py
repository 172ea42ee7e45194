"""Correlation of a confidence score with being right: ``point-biserial``
(Pearson's r of the confidence and the 0/1 hit) and ``spearman`` (Pearson's r
of their ranks, ties averaged).

corr(confidence, hit) = corr(uncertainty, miss) for uncertainty = 1 - confidence
and miss = 1 - hit, so p-fake's rows are the correlation of D's p_fake with
the classifier's misses that arXiv 2310.00761 reports (0.081-0.100). Along the
last axis, so the bootstrap passes [B, N] resamples in one call; NaN where a
side is constant (no miss, or one confidence value).
"""

from __future__ import annotations

import numpy as np

from probebench.hookspecs import hookimpl


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=-1) / np.where(denominator > 0, denominator, 1), np.nan)


def _correlation(confidence, hit, ranks: bool):
    from scipy.stats import rankdata

    conf = np.asarray(confidence, dtype=float)
    hits = np.asarray(hit, dtype=float)
    if ranks:
        conf, hits = rankdata(conf, axis=-1), rankdata(hits, axis=-1)
    value = _pearson(conf, hits)
    return float(value) if np.ndim(value) == 0 else value


class PointBiserial:
    """Pearson's r of the confidence and the hit (0/1): higher, the score is
    lower on misses."""

    name = "point-biserial"
    higher_is_better = True

    def __call__(self, confidence, hit):
        return _correlation(confidence, hit, ranks=False)


class Spearman:
    """Spearman's rho of the confidence and the hit (ranks, ties averaged)."""

    name = "spearman"
    higher_is_better = True

    def __call__(self, confidence, hit):
        return _correlation(confidence, hit, ranks=True)


@hookimpl
def register_metrics():
    return [PointBiserial, Spearman]
