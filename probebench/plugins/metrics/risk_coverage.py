"""Risk-coverage metrics in FD-Shifts' conventions, and operating points.

FD-Shifts (Jaeger et al., ICLR 2023) and the AUGRC paper (Traub et al.,
NeurIPS 2024) integrate risk-coverage curves with the trapezoid rule over the
*unique* confidence thresholds: at a threshold t the classifier accepts every
sample with confidence >= t, so tied samples enter together. probebench's own
``aurc`` instead averages the selective risk at every coverage k/N (ties broken
at random, in expectation). Both conventions are offered so that numbers can be
set beside published tables; each docstring says which it follows.

Like every metric, these work along the last axis on [B, N] batches and do not
depend on sample order (they reuse ``failure._Ranked``: samples sorted from
least to most confident, with their tied groups).
"""

from __future__ import annotations

import numpy as np

from probebench.errors import UserError
from probebench.hookspecs import hookimpl
from probebench.plugins.metrics.failure import _ranked, _squeeze

TRAUB_2024 = "Traub et al., Overcoming Common Flaws in the Evaluation of Selective Classification Systems, NeurIPS 2024 (arXiv:2407.01032)"
JAEGER_2023 = (
    "Jaeger et al., A Call to Reflect on Evaluation Practices for Failure Detection in Image Classification, ICLR 2023"
)


def augrc(confidence, hit):
    """Unscaled AUGRC ([B] or float): the area under the generalized risk
    (misses accepted / N) over coverage (accepted / N), trapezoid over the
    unique thresholds from an added point (0, 0).

    A tied group of ``size`` samples is one segment of width size/N between
    the point above it (misses accepted before the group, ``misses - tp_end``)
    and the point at its own threshold (``misses - tp_before``); spreading the
    segment's area over its ``size`` positions gives a mean over positions.
    """
    r = _ranked(confidence, hit)
    accepted_misses_mid = r.misses[..., None] - 0.5 * (r.tp_before + r.tp_end)
    return _squeeze(accepted_misses_mid.mean(axis=-1) / r.n, r.one_d)


class AUGRC:
    """Area under the generalized risk-coverage curve x1000 (Traub et al., 2024),
    as FD-Shifts prints it. The generalized risk at a threshold is the number of
    misses accepted divided by all N samples (not by the accepted ones, as the
    selective risk of AURC is); the curve is integrated with the trapezoid rule
    over the unique confidence thresholds, from an added point at (0, 0).
    Lower is better; 1000 x err^2 / 2 is a perfect ranking (see e-augrc),
    1000 x err / 2 a random one.

    Why FD-Shifts recommends it over AURC: AUGRC is the expected risk of
    silent failures over all thresholds, i.e. the probability that a random
    miss is accepted when a random sample is, and it weighs every failure
    equally. AURC's selective risk divides by the few samples accepted at low
    coverage, so its value is dominated by the most confident handful of
    samples (one confident miss moves it a lot) and it does not rank
    scorers the way their failure detection does.

    torch-uncertainty's AUGRC is another scale: it is not x1000, has no (0, 0)
    point and divides by (1 - 1/N). On untied scores
    torch-uncertainty AUGRC = (AUGRC/1000 - E1 / (2 N^2)) x N / (N - 1),
    where E1 = 1 if the most confident sample is a miss, else 0.
    """

    name = "augrc"
    higher_is_better = False
    scale = 1000
    reference = TRAUB_2024

    def __call__(self, confidence, hit):
        return np.multiply(augrc(confidence, hit), self.scale)


class EAUGRC:
    """Excess AUGRC x1000: AUGRC minus that of a perfect score on the same hits
    and misses, err^2 / 2 (err = the miss rate; exact for the trapezoid, the
    perfect curve being 0 up to the accuracy and linear after it). 0 is a
    perfect ranking whatever the accuracy. Lower is better."""

    name = "e-augrc"
    higher_is_better = False
    scale = 1000
    reference = TRAUB_2024

    def __call__(self, confidence, hit):
        r = _ranked(confidence, hit)
        err = r.misses / r.n
        return np.multiply(augrc(confidence, hit) - _squeeze(0.5 * err**2, r.one_d), self.scale)


def _level(metric: str, variant: str) -> float:
    try:
        level = float(variant)
    except ValueError:
        level = float("nan")
    if not 0 < level <= 100:
        raise UserError(
            f"{metric}: the level must be a percentage in (0, 100], got {variant!r}; name it as e.g. {metric}:80"
        )
    return level / 100


class RiskAtCoverage:
    """Selective risk (miss rate among the accepted samples) when the most
    confident p% of the samples are accepted: ``risk@coverage:80`` is the risk
    at 80% coverage. The k = ceil(p N / 100) most confident samples are
    accepted; a tie at the cut-off counts by expectation over random
    tie-breaking (probebench's AURC convention). Lower is better."""

    name = "risk@coverage"
    higher_is_better = False
    option_help = {"variant": "the coverage in percent, also given as risk@coverage:<percent> (e.g. risk@coverage:80)"}

    def __init__(self, variant: str = "80"):
        self.coverage = _level(self.name, variant)

    def __call__(self, confidence, hit):
        r = _ranked(confidence, hit)
        k = max(1, int(np.ceil(round(self.coverage * r.n, 9))))
        return _squeeze(r.expected_errors[..., k - 1] / k, r.one_d)


class CoverageAtRisk:
    """The largest coverage (fraction of samples accepted, most confident
    first) whose selective risk is at most p%: ``coverage@risk:5`` keeps as
    many samples as possible with at most 5% misses among them. 0 when even the
    most confident sample exceeds it. Coverages are k/N; within a tie the risk
    is the expectation over random tie-breaking (probebench's AURC
    convention). Higher is better."""

    name = "coverage@risk"
    higher_is_better = True
    option_help = {"variant": "the risk in percent, also given as coverage@risk:<percent> (e.g. coverage@risk:5)"}

    def __init__(self, variant: str = "5"):
        self.risk = _level(self.name, variant)

    def __call__(self, confidence, hit):
        r = _ranked(confidence, hit)
        k = np.arange(1, r.n + 1)
        within = r.expected_errors <= self.risk * k + 1e-12
        largest = np.where(within, k, 0).max(axis=-1)
        return _squeeze(largest / r.n, r.one_d)


class FPRAt95TPRHits:
    """FD-Shifts' ``fpr@95tpr``: hits are the positives and the confidence
    their score; at the highest threshold that accepts at least 95% of the hits,
    the fraction of misses also accepted. Not probebench's ``fpr95``, which
    takes misses as positives (fraction of hits flagged when 95% of misses are
    caught): the two answer different questions and differ in value. Equals
    scikit-learn's ``roc_curve(hit, confidence)`` read at the first TPR >= 0.95.
    Lower is better."""

    name = "fpr@95tpr"
    higher_is_better = False
    reference = JAEGER_2023

    def __call__(self, confidence, hit):
        r = _ranked(confidence, hit)
        hits_accepted = r.hits[..., None] - (r.start - r.tp_before)
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr = hits_accepted / r.hits[..., None]
            reached = r.new_group & (tpr >= 0.95)
            # the highest threshold reaching it is the largest group start (ascending order)
            at = np.where(reached, r.positions, -1).max(axis=-1)
            misses_accepted = r.misses - np.take_along_axis(r.tp_before, np.maximum(at, 0)[..., None], axis=-1)[..., 0]
            fpr = misses_accepted / r.misses
        valid = (r.misses > 0) & (r.hits > 0)
        return _squeeze(np.where(valid, fpr, np.nan), r.one_d)


@hookimpl
def register_metrics():
    return [AUGRC, EAUGRC, RiskAtCoverage, CoverageAtRisk, FPRAt95TPRHits]
