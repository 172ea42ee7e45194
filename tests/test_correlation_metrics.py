"""The point-biserial and Spearman metrics agree with scipy's own functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from probebench.plugins.metrics.correlation import PointBiserial, Spearman
from probebench.testing import check_metric


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_correlations_equal_scipys_pointbiserialr_and_spearmanr(seed):
    rng = np.random.default_rng(seed)
    hit = rng.random(300) < 0.8
    confidence = np.round(rng.random(300) + 0.3 * hit, 2)  # ties, and a real association
    assert PointBiserial()(confidence, hit) == pytest.approx(stats.pointbiserialr(hit, confidence).statistic)
    assert Spearman()(confidence, hit) == pytest.approx(stats.spearmanr(confidence, hit).statistic)
    uncertainty, miss = 1 - confidence, ~hit  # the same number as the correlation of p_fake with misses
    assert PointBiserial()(confidence, hit) == pytest.approx(stats.pearsonr(uncertainty, miss).statistic)
    assert PointBiserial()(confidence, hit) > 0


def test_the_correlations_keep_the_metric_contract_and_are_nan_without_a_miss():
    for metric in (PointBiserial(), Spearman()):
        check_metric(metric)
        assert math.isnan(metric(np.linspace(0, 1, 10), np.ones(10, dtype=bool)))
