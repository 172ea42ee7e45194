"""The miss-detection metrics agree with scikit-learn, ties and [B, N] batches included."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from probebench.plugins.metrics.failure import AUROC, FPR95, Accuracy, AUPRMiss


def random_case(seed: int, n: int = 300, ties: bool = False):
    rng = np.random.default_rng(seed)
    hit = rng.random(n) < 0.8
    confidence = rng.random(n) + 0.5 * hit
    if ties:
        confidence = np.round(confidence * 5) / 5  # few distinct values, many ties
    return confidence, hit


def sklearn_fpr95(confidence, hit):
    fpr, tpr, _ = roc_curve(~hit, -confidence, drop_intermediate=False)
    return fpr[np.argmax(tpr >= 0.95)]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_sklearn(seed, ties):
    confidence, hit = random_case(seed, ties=ties)
    assert AUROC()(confidence, hit) == pytest.approx(roc_auc_score(~hit, -confidence), abs=1e-12)
    assert AUPRMiss()(confidence, hit) == pytest.approx(average_precision_score(~hit, -confidence), abs=1e-12)
    assert FPR95()(confidence, hit) == pytest.approx(sklearn_fpr95(confidence, hit), abs=1e-12)
    assert Accuracy()(confidence, hit) == pytest.approx(hit.mean())


def test_metrics_batched_rows_equal_one_at_a_time():
    rows = [random_case(seed, n=120, ties=seed % 2 == 0) for seed in range(6)]
    confidence = np.stack([c for c, _ in rows])
    hit = np.stack([h for _, h in rows])
    for metric in (AUROC(), AUPRMiss(), FPR95(), Accuracy()):
        batched = metric(confidence, hit)
        assert batched.shape == (6,)
        np.testing.assert_allclose(batched, [metric(c, h) for c, h in rows], atol=1e-12)


def test_undefined_without_misses_is_nan():
    confidence = np.linspace(0, 1, 10)
    hit = np.ones(10, dtype=bool)
    for metric in (AUROC(), AUPRMiss(), FPR95()):
        assert np.isnan(metric(confidence, hit))


def test_perfect_and_reversed_detector():
    hit = np.array([True] * 8 + [False] * 2)
    confidence = hit.astype(float)
    assert AUROC()(confidence, hit) == 1.0
    assert AUROC()(-confidence, hit) == 0.0
    assert FPR95()(confidence, hit) == 0.0


def test_bootstrap_interval_contains_estimate():
    from probebench.evaluate import bootstrap_indices, estimate

    confidence, hit = random_case(1, n=500)
    est = estimate(AUROC(), confidence, hit, bootstrap_indices(500, 200, 0), 0.95)
    assert est.ci_low < est.value < est.ci_high
    assert est.n == 500
