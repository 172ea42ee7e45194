"""Calibration metrics of a score that is a probability of being right, beside
``ece`` (``failure.ECE``): the worst bin (MCE) and equal-mass bins (adaptive ECE).

Like ECE they return NaN when a confidence lies outside [0, 1] (the score is
not a probability), work along the last axis on [B, N] batches and do not
depend on sample order.
"""

from __future__ import annotations

import numpy as np

from probebench.errors import UserError
from probebench.hookspecs import hookimpl
from probebench.plugins.metrics.failure import _inputs, _ranked, _squeeze, equal_width_bins

BINS_HELP = {"bins": "number of confidence bins"}


class _Binned:
    """What the binned calibration metrics share: a probability score, lower
    is better, and the number of bins as their option."""

    name = ""
    higher_is_better = False
    needs_probability = True
    option_help = BINS_HELP

    def __init__(self, bins: int = 15):
        if bins < 1:
            raise UserError(f"{self.name}: bins must be >= 1, got {bins}")
        self.bins = bins


class MCE(_Binned):
    """Maximum calibration error (Naeini et al., AAAI 2015): over the non-empty
    ones of 15 equal-width confidence bins (lo, hi] (ECE's bins), the largest
    |accuracy - mean confidence|. Lower is better."""

    name = "mce"
    reference = "Naeini, Cooper & Hauskrecht, Obtaining Well Calibrated Probabilities Using Bayesian Binning, AAAI 2015"

    def __call__(self, confidence, hit):
        conf, hits, one_d = _inputs(confidence, hit)
        gap, count, valid = equal_width_bins(conf, hits, self.bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_bin = np.where(count > 0, np.abs(gap) / count, 0.0)
        return _squeeze(np.where(valid, per_bin.max(axis=-1), np.nan), one_d)


class AdaptiveECE(_Binned):
    """Adaptive (equal-mass) ECE (Nixon et al., CVPR-W 2019; torch-uncertainty's
    ``AdaptiveCalibrationError``): the samples sorted by confidence are split
    into 15 bins of equal size (sizes differ by at most one, as
    ``numpy.array_split`` splits them), and ECE's sum of
    (bin size / N) x |accuracy - mean confidence| is taken over them.
    A group of tied confidences cut by a bin edge contributes its mean hit rate
    to each side (the expectation over random tie-breaking), so the value does
    not depend on the order of tied samples; without ties it is the plain
    definition. Lower is better."""

    name = "adaptive-ece"
    reference = "Nixon et al., Measuring Calibration in Deep Learning, CVPR Workshops 2019"

    def __call__(self, confidence, hit):
        conf, _hits, one_d = _inputs(confidence, hit)
        r = _ranked(confidence, hit)
        sorted_conf = np.sort(conf, axis=-1)
        n = r.n
        group_hit_rate = 1.0 - (r.tp_end - r.tp_before) / (r.end - r.start + 1)
        # np.array_split: the first n % bins bins hold one sample more
        sizes = np.full(self.bins, n // self.bins) + (np.arange(self.bins) < n % self.bins)
        bin_of = np.repeat(np.arange(self.bins), sizes)
        rows = sorted_conf.shape[0]
        flat = (bin_of + self.bins * np.arange(rows)[:, None]).ravel()
        gap = np.bincount(flat, weights=(group_hit_rate - sorted_conf).ravel(), minlength=rows * self.bins)
        ece = np.abs(gap.reshape(rows, self.bins)).sum(axis=-1) / n
        valid = ((conf >= 0) & (conf <= 1)).all(axis=-1)
        return _squeeze(np.where(valid, ece, np.nan), one_d)


def _true_class(probabilities, labels) -> np.ndarray:
    probabilities = np.asarray(probabilities, dtype=float)
    return np.take_along_axis(probabilities, np.asarray(labels, dtype=np.int64)[:, None], axis=1)[:, 0]


class NLL:
    """Negative log-likelihood of the true class under the classifier's softmax,
    averaged over test samples (natural log; a probability of 0 is clipped to
    1e-12 so one sample cannot make it infinite). A property of the classifier,
    not of a scorer: rows have method ``-``. Lower is better."""

    name = "nll"
    higher_is_better = False
    needs_confidence = False
    needs_probabilities = True

    def per_sample(self, probabilities, labels) -> np.ndarray:
        return -np.log(np.clip(_true_class(probabilities, labels), 1e-12, 1.0))

    def __call__(self, confidence, hit):  # needs the class probabilities, which (confidence, hit) do not carry
        return _squeeze(np.full(np.atleast_2d(hit).shape[:-1], np.nan), np.ndim(hit) == 1)


class Brier:
    """Brier score of the classifier's softmax: the squared distance to the
    one-hot true class, summed over classes and averaged over samples (Brier,
    1950; in [0, 2], as FD-Shifts and torch-uncertainty report it). Rows have
    method ``-``. Lower is better."""

    name = "brier"
    higher_is_better = False
    needs_confidence = False
    needs_probabilities = True
    reference = "Brier, Verification of Forecasts Expressed in Terms of Probability, Monthly Weather Review 1950"

    def per_sample(self, probabilities, labels) -> np.ndarray:
        probabilities = np.asarray(probabilities, dtype=float)
        true = _true_class(probabilities, labels)
        return (probabilities**2).sum(axis=1) - 2 * true + 1

    __call__ = NLL.__call__


@hookimpl
def register_metrics():
    return [MCE, AdaptiveECE, NLL, Brier]
