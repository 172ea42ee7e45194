"""Failure-detection metrics: how well a confidence score separates a
classifier's hits from its misses.

Conventions (part of the results contract):

- Miss detection treats a *miss* as the positive class and ``-confidence`` as
  its score. AUROC equals FD-Shifts' AUROC_f, which takes success as positive
  on the confidence.
- Every metric works along the last axis, so the bootstrap can pass [B, N]
  resamples in one call; a 1-d input gives a float. Where a metric is
  undefined (no miss, or no hit) it is NaN.
- Every metric is a symmetric function of the samples (their order does not
  matter). The bootstrap relies on this: it hands metrics resamples already
  sorted by confidence, and the shared ``_Ranked`` helper skips the sort when
  its input is sorted, so 1,000 resamples cost a few linear passes.
- Ties are handled exactly: tied scores share a threshold (ROC/PR, as in
  scikit-learn) or are broken at random in expectation (risk-coverage).
- ``scale`` (default 1) is the factor a metric's value is already multiplied
  by: AURC and E-AURC are stored and shown x1000, as papers print them.
- ``needs_probability`` marks metrics that are defined only when the scores
  are probabilities of being right (ECE); they return NaN for a score outside
  [0, 1] (e.g. negative entropy). A score inside [0, 1] that is not a
  probability cannot be told apart by its values: read its ECE with care.
"""

from __future__ import annotations

import weakref
from functools import cached_property

import numpy as np

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


def _squeeze(values, one_d: bool):
    return float(np.asarray(values).reshape(-1)[0]) if one_d else values


def _inputs(confidence, hit):
    """2-d float confidence and bool hit, and whether the input was 1-d."""
    one_d = np.ndim(hit) == 1
    conf = np.atleast_2d(np.asarray(confidence, dtype=float))
    hits = np.atleast_2d(np.asarray(hit, dtype=bool))
    return conf, hits, one_d


class _Ranked:
    """Samples sorted from least to most confident (the order a miss detector
    flags them in), with cumulative counts and tied groups, each computed once
    when first used and shared by the metrics evaluated on the same batch.

    ``miss``            bool [B, N], sorted ascending by confidence
    ``tp``              misses up to and including each position
    ``start``/``end``   first / last position of the position's group of tied scores
    ``tp_end``          misses up to the end of the position's group
    ``tp_before``       misses before the start of the position's group
    """

    def __init__(self, confidence, hit):
        conf, hits, self.one_d = _inputs(confidence, hit)
        if conf.shape[-1] > 1 and not (conf[..., 1:] >= conf[..., :-1]).all():
            order = np.argsort(conf, axis=-1, kind="stable")
            conf = np.take_along_axis(conf, order, axis=-1)
            hits = np.take_along_axis(hits, order, axis=-1)
        self.miss = ~hits
        self.n = conf.shape[-1]
        self.tp = np.cumsum(self.miss, axis=-1, dtype=np.int64)
        self.misses = self.tp[..., -1]
        self.hits = self.n - self.misses
        self.new_group = np.ones(conf.shape, dtype=bool)
        np.not_equal(conf[..., 1:], conf[..., :-1], out=self.new_group[..., 1:])
        self.last = np.ones(conf.shape, dtype=bool)
        self.last[..., :-1] = self.new_group[..., 1:]

    @cached_property
    def positions(self):
        return np.broadcast_to(np.arange(self.n), self.miss.shape)

    @cached_property
    def fp(self):
        return np.arange(1, self.n + 1) - self.tp

    @cached_property
    def start(self):
        return np.maximum.accumulate(np.where(self.new_group, self.positions, 0), axis=-1)

    @cached_property
    def end(self):
        reverse = np.where(self.last, self.positions, self.n)[..., ::-1]
        return np.minimum.accumulate(reverse, axis=-1)[..., ::-1]

    @cached_property
    def tp_end(self):
        return np.take_along_axis(self.tp, self.end, axis=-1)

    @cached_property
    def tp_before(self):
        return np.take_along_axis(self.tp - self.miss, self.start, axis=-1)

    @cached_property
    def expected_errors(self) -> np.ndarray:
        """Expected misses among the k most confident samples, k = 1..N ([B, N]).

        Samples are accepted from most to least confident; within a group of
        tied scores the order is random, so the expected misses grow linearly
        across the group (an exact expectation, not an approximation).
        """
        size = self.end - self.start + 1
        misses_more_confident = self.misses[..., None] - self.tp_end
        # ascending position p is descending position n-1-p; within its group,
        # the descending order has taken (end - p + 1) samples
        taken = self.end - self.positions + 1
        expected = misses_more_confident + taken * ((self.tp_end - self.tp_before) / size)
        return expected[..., ::-1]

    @cached_property
    def aurc(self) -> np.ndarray:
        """Unscaled AURC [B]: mean selective risk over coverages k/N."""
        return (self.expected_errors / np.arange(1, self.n + 1)).mean(axis=-1)

    @cached_property
    def aurc_trapezoid(self) -> np.ndarray:
        """Unscaled AURC [B] in FD-Shifts' convention: selective risk over
        coverage, trapezoid over the unique thresholds, from an added point at
        coverage 0 with the risk of the highest threshold. A tied group is one
        segment of width size/N, so its area spread over its positions is a
        mean over positions."""
        risk_at = (self.misses[..., None] - self.tp_before) / (self.n - self.start)
        accepted_above = self.n - self.end - 1
        with np.errstate(invalid="ignore", divide="ignore"):
            risk_above = (self.misses[..., None] - self.tp_end) / accepted_above
        risk_above = np.where(accepted_above > 0, risk_above, risk_at)
        return (0.5 * (risk_at + risk_above)).mean(axis=-1)


_last_ranking: list = []  # [(weakref to confidence, weakref to hit, _Ranked)] of the last read-only batch


def _ranked(confidence, hit) -> _Ranked:
    """A ``_Ranked`` of the inputs, shared by the metrics evaluated one after
    another on the same bootstrap batch. Only read-only arrays that own their
    data are memoised (the evaluator hands out such batches), so an array that
    could have changed in place since the last call is never served stale; the
    memo is dropped as soon as the batch is."""

    def frozen(a):
        return isinstance(a, np.ndarray) and not a.flags.writeable and a.base is None

    if not (frozen(confidence) and frozen(hit)):
        return _Ranked(confidence, hit)
    if _last_ranking and _last_ranking[0][0]() is confidence and _last_ranking[0][1]() is hit:
        return _last_ranking[0][2]
    ranking = _Ranked(confidence, hit)
    _last_ranking[:] = [(weakref.ref(confidence), weakref.ref(hit), ranking)]
    weakref.finalize(confidence, _last_ranking.clear)
    return ranking


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
        r = _ranked(confidence, hit)
        # each hit wins against the misses below its group and half of those tied with it
        wins = np.where(r.miss, 0.0, 0.5 * (r.tp_before + r.tp_end)).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = wins / (r.hits * r.misses)
        return _squeeze(np.where((r.hits > 0) & (r.misses > 0), auc, np.nan), r.one_d)


class AUPRMiss:
    """Average precision of detecting misses by low confidence (scikit-learn's
    ``average_precision_score`` with misses positive and ``-confidence`` as score)."""

    name = "aupr-miss"
    higher_is_better = True

    def __call__(self, confidence, hit):
        r = _ranked(confidence, hit)
        precision_at_end = r.tp_end / (r.end + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = (r.miss * precision_at_end).sum(axis=-1) / r.misses
        return _squeeze(np.where(r.misses > 0, ap, np.nan), r.one_d)


class AUPRHit:
    """Average precision of finding hits by high confidence (scikit-learn's
    ``average_precision_score`` with hits positive and ``confidence`` as score).
    Dominated by the many hits; reported for completeness."""

    name = "aupr-hit"
    higher_is_better = True

    def __call__(self, confidence, hit):
        r = _ranked(confidence, hit)
        # accepting every sample at least as confident as the group start
        accepted = r.n - r.start
        hits_accepted = r.hits[..., None] - (r.start - r.tp_before)
        precision = hits_accepted / accepted
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = np.where(r.miss, 0.0, precision).sum(axis=-1) / r.hits
        return _squeeze(np.where(r.hits > 0, ap, np.nan), r.one_d)


class FPR95:
    """Fraction of hits flagged when the threshold flags at least 95% of misses
    (FPR at 95% TPR, misses positive). Lower is better."""

    name = "fpr95"
    higher_is_better = False

    def __call__(self, confidence, hit):
        r = _ranked(confidence, hit)
        positives = r.misses[..., None]
        negatives = r.hits[..., None]
        with np.errstate(invalid="ignore", divide="ignore"):
            reached = r.last & (r.tp >= 0.95 * positives)
            first = np.argmax(reached, axis=-1)[..., None]
            fpr = (np.take_along_axis(r.fp, first, axis=-1) / negatives)[..., 0]
        valid = (r.misses > 0) & (r.hits > 0)
        return _squeeze(np.where(valid, fpr, np.nan), r.one_d)


class AURC:
    """Area under the risk-coverage curve x1000 (Geifman et al., 2019): the
    mean, over coverages k/N for k = 1..N, of the miss rate among the k most
    confident samples (ties broken at random, in expectation). Lower is better;
    it mixes the classifier's accuracy with the score's ranking (see E-AURC).

    ``aurc:fd`` is FD-Shifts' convention: the trapezoid rule over the unique
    confidence thresholds from an added point at coverage 0 with the risk of
    the most confident threshold. Without ties the two differ by
    (r_1 - r_N) / 2N (r_k the risk of the k most confident): small when the
    most confident sample is a hit, large when it is a miss. Use ``aurc:fd``
    beside published FD-Shifts tables (which also recommend AUGRC, see
    ``probebench show metric augrc``)."""

    name = "aurc"
    higher_is_better = False
    scale = 1000
    option_help = {"variant": "'' (probebench: mean over k/N) or 'fd' (FD-Shifts: trapezoid); also given as aurc:fd"}

    def __init__(self, variant: str = ""):
        if variant not in ("", "fd"):
            raise UserError(f"aurc: unknown variant {variant!r}; use aurc (mean over coverages k/N) or aurc:fd")
        self.variant = variant

    def __call__(self, confidence, hit):
        r = _ranked(confidence, hit)
        area = r.aurc_trapezoid if self.variant == "fd" else r.aurc
        return _squeeze(area * self.scale, r.one_d)


def optimal_aurc(hits, n: int):
    """AURC (unscaled) of a perfect score, which accepts every hit before any
    miss, for ``hits`` hits out of ``n`` (an array of counts)."""
    k = np.arange(1, n + 1)
    return (np.maximum(k - np.asarray(hits)[..., None], 0) / k).mean(axis=-1)


class EAURC:
    """Excess AURC x1000: AURC minus the AURC of a perfect score on the same
    hits and misses, so 0 is a perfect ranking whatever the accuracy. Uses the
    exact finite-sample optimum (the continuous r + (1-r) ln(1-r) of Geifman
    et al. differs by O(1/N)). Lower is better."""

    name = "e-aurc"
    higher_is_better = False
    scale = 1000

    def __call__(self, confidence, hit):
        r = _ranked(confidence, hit)
        excess = r.aurc - optimal_aurc(r.hits, r.n)
        return _squeeze(excess * self.scale, r.one_d)


class ECE:
    """Expected calibration error of a score that is a probability of being
    right: sum over 15 equal-width confidence bins (lo, hi] of
    (bin size / N) x |accuracy - mean confidence| in the bin. NaN when any
    confidence lies outside [0, 1] (the score is not a probability, e.g.
    negative entropy). Lower is better."""

    name = "ece"
    higher_is_better = False
    needs_probability = True
    option_help = {"bins": "number of equal-width confidence bins"}

    def __init__(self, bins: int = 15):

        if bins < 1:
            raise UserError(f"ece: bins must be >= 1, got {bins}")
        self.bins = bins

    def __call__(self, confidence, hit):
        conf, hits, one_d = _inputs(confidence, hit)
        gap, _count, valid = equal_width_bins(conf, hits, self.bins)
        ece = np.abs(gap).sum(axis=-1) / conf.shape[-1]
        return _squeeze(np.where(valid, ece, np.nan), one_d)


def equal_width_bins(conf: np.ndarray, hits: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row sums of (hit - confidence) and sample counts [B, bins] over
    equal-width confidence bins (lo, hi] (0 goes to the first), and whether
    each row's confidences all lie in [0, 1] (are probabilities)."""
    rows = conf.shape[0]
    valid = ((conf >= 0) & (conf <= 1)).all(axis=-1)
    clipped = np.clip(np.nan_to_num(conf, nan=0.0), 0.0, 1.0)
    bin_of = np.clip(np.ceil(clipped * bins).astype(np.int64) - 1, 0, bins - 1)
    flat = (bin_of + bins * np.arange(rows)[:, None]).ravel()
    gap = np.bincount(flat, weights=(hits - clipped).ravel(), minlength=rows * bins).reshape(rows, bins)
    count = np.bincount(flat, minlength=rows * bins).reshape(rows, bins)
    return gap, count, valid


@hookimpl
def register_metrics():
    return [Accuracy, AUROC, AUPRMiss, AUPRHit, FPR95, AURC, EAURC, ECE]
