"""Miss-detection metrics: a *miss* is the positive class and ``-confidence`` its score.

Every metric works along the last axis, so the bootstrap can pass [B, N]
resamples in one call; a 1-d input gives a float. Where a metric is undefined
(no miss, or no hit) it is NaN. AUROC equals FD-Shifts' AUROC_f, which takes
success as positive on the confidence.
"""

from __future__ import annotations

import numpy as np

from harness.hookspecs import hookimpl


def _squeeze(values, one_d: bool):
    return float(values[0]) if one_d else values


def _ranked(confidence, hit):
    """Samples sorted from least to most confident (the order a miss detector
    flags them in), with cumulative miss/hit counts and the last index of each
    group of tied scores."""
    confidence = np.atleast_2d(np.asarray(confidence, dtype=float))
    miss = ~np.atleast_2d(np.asarray(hit, dtype=bool))
    order = np.argsort(confidence, axis=-1, kind="stable")
    score = np.take_along_axis(confidence, order, axis=-1)
    miss = np.take_along_axis(miss, order, axis=-1)
    tp = np.cumsum(miss, axis=-1)
    fp = np.cumsum(~miss, axis=-1)
    n = score.shape[-1]
    last = np.ones_like(score, dtype=bool)
    last[..., :-1] = score[..., 1:] != score[..., :-1]
    positions = np.broadcast_to(np.arange(n), score.shape)
    group_end = np.minimum.accumulate(np.where(last, positions, n)[..., ::-1], axis=-1)[..., ::-1]
    return miss, tp, fp, last, group_end


class Accuracy:
    """Fraction of test samples the classifier gets right (top-1)."""

    name = "accuracy"
    higher_is_better = True
    needs_confidence = False

    def __call__(self, confidence, hit):
        hit = np.asarray(hit, dtype=float)
        return _squeeze(np.atleast_2d(hit).mean(axis=-1), hit.ndim == 1)


class AUROC:
    """Area under the ROC curve of detecting misses by low confidence: the
    probability that a random miss is less confident than a random hit (ties
    count one half). 0.5 is chance."""

    name = "auroc"
    higher_is_better = True

    def __call__(self, confidence, hit):
        from scipy.stats import rankdata

        one_d = np.ndim(hit) == 1
        conf = np.atleast_2d(np.asarray(confidence, dtype=float))
        hits = np.atleast_2d(np.asarray(hit, dtype=bool))
        ranks = rankdata(conf, axis=-1)  # average ranks for ties
        n_hit = hits.sum(axis=-1)
        n_miss = hits.shape[-1] - n_hit
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = ((ranks * hits).sum(axis=-1) - n_hit * (n_hit + 1) / 2) / (n_hit * n_miss)
        return _squeeze(auc, one_d)


class AUPRMiss:
    """Average precision of detecting misses by low confidence (scikit-learn's
    ``average_precision_score`` with misses positive and ``-confidence`` as score)."""

    name = "aupr-miss"
    higher_is_better = True

    def __call__(self, confidence, hit):
        one_d = np.ndim(hit) == 1
        miss, tp, _fp, _last, group_end = _ranked(confidence, hit)
        precision_at_end = np.take_along_axis(tp, group_end, axis=-1) / (group_end + 1)
        positives = miss.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = (miss * precision_at_end).sum(axis=-1) / positives
        return _squeeze(np.where(positives > 0, ap, np.nan), one_d)


class FPR95:
    """Fraction of hits flagged when the threshold flags at least 95% of misses
    (FPR at 95% TPR, misses positive). Lower is better."""

    name = "fpr95"
    higher_is_better = False

    def __call__(self, confidence, hit):
        one_d = np.ndim(hit) == 1
        miss, tp, fp, last, _end = _ranked(confidence, hit)
        positives = miss.sum(axis=-1, keepdims=True)
        negatives = miss.shape[-1] - positives
        with np.errstate(invalid="ignore", divide="ignore"):
            reached = last & (tp >= 0.95 * positives)
            first = np.argmax(reached, axis=-1)[..., None]
            fpr = (np.take_along_axis(fp, first, axis=-1) / negatives)[..., 0]
        valid = (positives[..., 0] > 0) & (negatives[..., 0] > 0)
        return _squeeze(np.where(valid, fpr, np.nan), one_d)


@hookimpl
def register_metrics():
    return [Accuracy, AUROC, AUPRMiss, FPR95]
