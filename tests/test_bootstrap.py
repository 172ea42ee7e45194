"""Percentile bootstrap intervals: the fast resampling equals the obvious one,
and intervals cover the true value at about the nominal rate."""

import importlib

import numpy as np
import pytest
from scipy.stats import norm

from probebench.evaluate import Resamples, bootstrap_indices, bootstrap_values, estimate, estimates, evaluate_cell
from probebench.plugins.metrics.failure import AUROC, FPR95, Accuracy, AUPRMiss, register_metrics
from probebench.suite import Bootstrap

evaluate = importlib.import_module(
    "probebench.evaluate"
)  # the statistics module (probebench.evaluate is the API function)

ALL = {cls.name: cls() for cls in register_metrics()}


def case(seed: int, n: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    hit = rng.random(n) < 0.8
    confidence = rng.random(n) * 0.6 + 0.4 * hit
    if ties:
        confidence = np.round(confidence * 8) / 8
    return confidence, hit


@pytest.mark.parametrize("ties", [False, True])
def test_fast_resampling_equals_indexing_each_resample(ties, monkeypatch):
    monkeypatch.setattr(evaluate, "CHUNK_ELEMENTS", 7 * 90)  # several chunks, the last one short
    confidence, hit = case(0, 90, ties)
    indices = bootstrap_indices(90, 40, seed=3)
    fast = bootstrap_values(ALL, confidence, hit, Resamples.from_indices(indices, 90))
    for name, metric in ALL.items():
        slow = [metric(confidence[i], hit[i]) for i in indices]
        np.testing.assert_allclose(fast[name], slow, atol=1e-12, err_msg=name)


def test_resample_counts_add_up():
    resamples = Resamples.draw(50, 30, seed=1)
    assert resamples.counts.shape == (30, 50) and (resamples.counts.sum(axis=1) == 50).all()
    again = Resamples.draw(50, 30, seed=1)
    assert (again.counts == resamples.counts).all()


def test_interval_contains_estimate_and_narrows_with_n():
    widths = []
    for n in (200, 3200):
        confidence, hit = case(1, n)
        est = estimate(AUROC(), confidence, hit, Resamples.draw(n, 300, 0), 0.95)
        assert est.ci_low < est.value < est.ci_high and est.n == n
        widths.append(est.ci_high - est.ci_low)
    assert widths[1] < widths[0] / 2.5  # about 1/sqrt(16) = 1/4


def test_higher_level_gives_wider_interval():
    confidence, hit = case(2, 400)
    resamples = Resamples.draw(400, 400, 0)
    narrow = estimate(AUPRMiss(), confidence, hit, resamples, 0.5)
    wide = estimate(AUPRMiss(), confidence, hit, resamples, 0.99)
    assert wide.ci_low < narrow.ci_low < narrow.ci_high < wide.ci_high


def test_undefined_metric_has_no_interval():
    confidence = np.linspace(0, 1, 20)
    est = estimates(
        {"auroc": AUROC(), "accuracy": Accuracy()}, confidence, np.ones(20, bool), Resamples.draw(20, 50, 0), 0.95
    )
    assert np.isnan(est["auroc"].value) and np.isnan(est["auroc"].ci_low)
    assert est["accuracy"].value == 1.0 and est["accuracy"].ci_low == 1.0


def test_evaluate_cell_rows_and_zero_resamples():
    confidence, hit = case(4, 100)
    metrics = {"accuracy": Accuracy(), "auroc": AUROC(), "fpr95": FPR95()}
    rows = evaluate_cell({"a": confidence, "b": -confidence}, hit, metrics, Bootstrap(resamples=50))
    assert [(r["method"], r["metric"]) for r in rows] == [
        ("-", "accuracy"),
        ("a", "auroc"),
        ("b", "auroc"),
        ("a", "fpr95"),
        ("b", "fpr95"),
    ]
    by = {(r["method"], r["metric"]): r for r in rows}
    assert by[("a", "auroc")]["value"] == pytest.approx(1 - by[("b", "auroc")]["value"])
    assert all(r["ci_low"] <= r["value"] <= r["ci_high"] for r in rows)
    off = evaluate_cell({"a": confidence}, hit, metrics, Bootstrap(resamples=0))
    assert all(np.isnan(r["ci_low"]) for r in off)


def test_interval_covers_the_true_value_at_the_nominal_rate():
    """Draw 200 test sets from a model whose AUROC and accuracy are known and
    count how often the 90% interval holds them."""
    separation, accuracy, n, level = 1.0, 0.8, 300, 0.90
    true_auroc = norm.cdf(separation / np.sqrt(2))  # P(miss score < hit score), both unit normal
    rng = np.random.default_rng(0)
    covered = {"auroc": 0, "accuracy": 0}
    trials = 200
    for trial in range(trials):
        hit = rng.random(n) < accuracy
        confidence = rng.normal(size=n) + separation * hit
        est = estimates(
            {"auroc": AUROC(), "accuracy": Accuracy()}, confidence, hit, Resamples.draw(n, 250, trial), level
        )
        covered["auroc"] += est["auroc"].ci_low <= true_auroc <= est["auroc"].ci_high
        covered["accuracy"] += est["accuracy"].ci_low <= accuracy <= est["accuracy"].ci_high
    for name, count in covered.items():
        # binomial sd at 200 trials is 0.021: allow about 2.5 sd either side
        assert 0.84 <= count / trials <= 0.96, (name, count / trials)
