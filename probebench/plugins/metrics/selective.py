"""Selective-prediction metrics: how accurate the classifier is on the samples
a confidence score keeps.

Works along the last axis like every metric, so the bootstrap can pass [B, N]
resamples in one call; a 1-d input gives a float.
"""

from __future__ import annotations

import numpy as np

from probebench.hookspecs import hookimpl

PERCENTILES = np.arange(1, 101)


def kept_counts(n: int) -> np.ndarray:
    """How many samples the most confident p% are, for p = 1..100: ceil(p n / 100)
    (at least one), in integer arithmetic."""
    return np.maximum(1, (PERCENTILES * n + 99) // 100)


class AUAC:
    """Area under the accuracy-vs-percentile curve, as GradTrust is evaluated
    (Prabhushankar & AlRegib, MIPR 2024): keep the most confident p% of the
    samples (ceil(p N / 100) of them), take the accuracy of those, and average
    over p = 1..100. In [0, 1] (the paper prints it x100). A constant score
    gets the plain accuracy; a perfect one (every hit more confident than every
    miss) the most the accuracy allows. Ties at the
    cut-off count by expectation over random tie-breaking (the tied group
    contributes its mean hit rate), so the value does not depend on sample
    order. Higher is better."""

    name = "auac"
    higher_is_better = True

    def __call__(self, confidence, hit):
        one_d = np.ndim(hit) == 1
        conf = np.atleast_2d(np.asarray(confidence, dtype=float))
        hits = np.atleast_2d(np.asarray(hit, dtype=float))
        n = conf.shape[-1]
        if n == 0:
            return float("nan") if one_d else np.full(conf.shape[:-1], np.nan)
        if (np.diff(conf, axis=-1) >= 0).all():  # the bootstrap's batches come sorted ascending
            score, hits = conf[..., ::-1], hits[..., ::-1]  # most confident first
        else:
            order = np.argsort(-conf, axis=-1, kind="stable")
            score = np.take_along_axis(conf, order, axis=-1)
            hits = np.take_along_axis(hits, order, axis=-1)
        cumulative = np.concatenate([np.zeros(hits.shape[:-1] + (1,)), np.cumsum(hits, axis=-1)], axis=-1)

        positions = np.broadcast_to(np.arange(n), score.shape)
        first = np.ones(score.shape, dtype=bool)
        first[..., 1:] = score[..., 1:] != score[..., :-1]
        last = np.ones(score.shape, dtype=bool)
        last[..., :-1] = first[..., 1:]
        group_start = np.maximum.accumulate(np.where(first, positions, 0), axis=-1)
        group_end = np.minimum.accumulate(np.where(last, positions, n)[..., ::-1], axis=-1)[..., ::-1]

        kept = kept_counts(n)
        at = np.broadcast_to(kept - 1, score.shape[:-1] + (len(kept),))
        start = np.take_along_axis(group_start, at, axis=-1)
        end = np.take_along_axis(group_end, at, axis=-1) + 1
        before = np.take_along_axis(cumulative, start, axis=-1)
        group_hits = np.take_along_axis(cumulative, end, axis=-1) - before
        kept_hits = before + (kept - start) * group_hits / (end - start)
        auac = (kept_hits / kept).mean(axis=-1)
        return float(auac[0]) if one_d else auac


@hookimpl
def register_metrics():
    return [AUAC]
