"""How long percentile-bootstrap intervals take: 1,000 resamples of 10,000 samples.

Run apart: ``pytest tests/benchmarks --benchmark-only``.
"""

import numpy as np
import pytest

from probebench.evaluate import Resamples, estimates
from probebench.plugins.metrics.failure import AUROC, register_metrics

N, RESAMPLES = 10_000, 1_000


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(0)
    hit = rng.random(N) < 0.9
    confidence = 1 / (1 + np.exp(-(rng.normal(size=N) + 2 * hit)))  # a probability, so ECE is computed
    return confidence, hit


def test_draw_resamples(benchmark):
    benchmark.pedantic(Resamples.draw, args=(N, RESAMPLES, 0), rounds=3, iterations=1)


def test_auroc_interval(benchmark, sample):
    resamples = Resamples.draw(N, RESAMPLES, 0)
    est = benchmark.pedantic(estimates, args=({"auroc": AUROC()}, *sample, resamples, 0.95), rounds=3, iterations=1)
    assert est["auroc"].ci_low < est["auroc"].value < est["auroc"].ci_high


def test_every_metric_interval_one_method(benchmark, sample):
    metrics = {cls.name: cls() for cls in register_metrics()}
    resamples = Resamples.draw(N, RESAMPLES, 0)
    est = benchmark.pedantic(estimates, args=(metrics, *sample, resamples, 0.95), rounds=3, iterations=1)
    assert all(np.isfinite(e.ci_low) for e in est.values())
