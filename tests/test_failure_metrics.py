"""Every failure-detection metric against a reference: scikit-learn where it has
one, a direct brute-force formula otherwise; ties, [B, N] batches and the
undefined cases included."""

import itertools

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from probebench.plugins.metrics.failure import (
    AURC,
    AUROC,
    EAURC,
    ECE,
    FPR95,
    Accuracy,
    AUPRHit,
    AUPRMiss,
    optimal_aurc,
    register_metrics,
)

ALL = [cls() for cls in register_metrics()]


def random_case(seed: int, n: int = 300, ties: bool = False, probability: bool = False):
    rng = np.random.default_rng(seed)
    hit = rng.random(n) < 0.8
    confidence = rng.random(n) + 0.5 * hit
    if probability:
        confidence = confidence / 1.5
    if ties:
        confidence = np.round(confidence * 5) / 5  # few distinct values, many ties
    return confidence, hit


# -- brute-force references ------------------------------------------------------
def geifman_aurc(confidence, hit, order=None):
    """Mean over k of the miss rate among the first k samples of ``order``
    (default: most confident first, ties in input order)."""
    order = np.argsort(-confidence, kind="stable") if order is None else np.asarray(order)
    miss = ~hit[order]
    return float(np.mean([miss[:k].sum() / k for k in range(1, len(miss) + 1)]))


def aurc_over_tie_orders(confidence, hit):
    """AURC averaged over every order that sorts the samples most confident
    first: ties broken in all possible ways, each equally likely."""
    n = len(confidence)
    values = [
        geifman_aurc(confidence, hit, order)
        for order in itertools.permutations(range(n))
        if all(confidence[order[i]] >= confidence[order[i + 1]] for i in range(n - 1))
    ]
    return float(np.mean(values)), len(values)


def brute_ece(confidence, hit, bins=15):
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = (confidence > lo) & (confidence <= hi) if b else (confidence >= 0) & (confidence <= hi)
        if members.any():
            total += members.sum() / len(confidence) * abs(hit[members].mean() - confidence[members].mean())
    return total


# -- cross-checks ----------------------------------------------------------------
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_ranking_metrics_equal_sklearn(seed, ties):
    confidence, hit = random_case(seed, ties=ties)
    assert AUROC()(confidence, hit) == pytest.approx(roc_auc_score(~hit, -confidence), abs=1e-12)
    assert AUPRMiss()(confidence, hit) == pytest.approx(average_precision_score(~hit, -confidence), abs=1e-12)
    assert AUPRHit()(confidence, hit) == pytest.approx(average_precision_score(hit, confidence), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_aurc_equals_geifman_formula_without_ties(seed):
    confidence, hit = random_case(seed, n=200)
    assert AURC()(confidence, hit) == pytest.approx(1000 * geifman_aurc(confidence, hit), abs=1e-9)
    perfect = 1000 * geifman_aurc(hit.astype(float), hit)
    assert EAURC()(confidence, hit) == pytest.approx(1000 * geifman_aurc(confidence, hit) - perfect, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_aurc_with_ties_is_the_mean_over_tie_breaking_orders(seed):
    rng = np.random.default_rng(seed)
    hit = rng.random(7) < 0.6
    confidence = rng.integers(0, 3, 7).astype(float)  # groups of tied scores
    reference, orders = aurc_over_tie_orders(confidence, hit)
    assert orders > 1  # the case has ties to break
    assert AURC()(confidence, hit) == pytest.approx(1000 * reference, abs=1e-9)


def test_optimal_aurc_is_a_perfect_score_and_near_the_continuous_formula():
    hit = np.array([True] * 900 + [False] * 100)
    assert optimal_aurc(900, 1000) == pytest.approx(geifman_aurc(hit.astype(float), hit), abs=1e-12)
    risk = 0.1
    assert optimal_aurc(900, 1000) == pytest.approx(risk + (1 - risk) * np.log(1 - risk), abs=5e-3)
    assert EAURC()(hit.astype(float), hit) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_ece_equals_binned_formula(seed, ties):
    confidence, hit = random_case(seed, probability=True, ties=ties)
    confidence[:3] = [0.0, 1.0, 1 / 15]  # bin edges: 0 goes to the first bin, edges to the lower bin
    assert ECE()(confidence, hit) == pytest.approx(brute_ece(confidence, hit), abs=1e-12)
    assert ECE(bins=10)(confidence, hit) == pytest.approx(brute_ece(confidence, hit, 10), abs=1e-12)


def test_ece_is_nan_for_scores_that_are_not_probabilities():
    confidence, hit = random_case(0)  # values up to 1.5
    assert np.isnan(ECE()(confidence, hit))
    assert np.isnan(ECE()(-confidence / 2, hit))  # like negative entropy
    assert np.isfinite(ECE()(confidence / 1.5, hit))


def test_fpr95_and_accuracy_by_hand():
    hit = np.array([False, False, True, True, True, True])
    confidence = np.array([0.1, 0.5, 0.3, 0.6, 0.7, 0.8])
    # flag up to 0.5: both misses caught, one hit (0.3) of four flagged
    assert FPR95()(confidence, hit) == pytest.approx(0.25)
    assert Accuracy()(confidence, hit) == pytest.approx(4 / 6)


# -- shape and edge cases ----------------------------------------------------------
@pytest.mark.parametrize("metric", ALL, ids=lambda m: m.name)
def test_batched_rows_equal_one_at_a_time(metric):
    rows = [random_case(seed, n=120, ties=seed % 2 == 0, probability=True) for seed in range(6)]
    confidence = np.stack([c for c, _ in rows])
    hit = np.stack([h for _, h in rows])
    batched = metric(confidence, hit)
    assert batched.shape == (6,)
    np.testing.assert_allclose(batched, [metric(c, h) for c, h in rows], atol=1e-12)


@pytest.mark.parametrize("metric", ALL, ids=lambda m: m.name)
def test_sorted_read_only_input_gives_the_same_value(metric):
    """The bootstrap hands metrics read-only batches sorted by confidence; the
    shortcut they take on such input must not change a value."""
    confidence, hit = random_case(3, n=150, ties=True, probability=True)
    order = np.argsort(confidence, kind="stable")
    sorted_conf, sorted_hit = confidence[order][None].copy(), hit[order][None].copy()
    sorted_conf.flags.writeable = False
    sorted_hit.flags.writeable = False
    expected = metric(confidence, hit)
    np.testing.assert_allclose(metric(sorted_conf, sorted_hit), [expected], atol=1e-12)
    other = np.where(sorted_hit, sorted_conf, 0.0)  # a different batch right after must not reuse the first
    other.flags.writeable = False
    np.testing.assert_allclose(metric(other, sorted_hit), metric(other.copy(), sorted_hit.copy()), atol=1e-12)


def test_every_metric_declares_its_direction():
    directions = {m.name: m.higher_is_better for m in ALL}
    assert directions == {
        "accuracy": True,
        "auroc": True,
        "aupr-miss": True,
        "aupr-hit": True,
        "fpr95": False,
        "aurc": False,
        "e-aurc": False,
        "ece": False,
    }


def test_undefined_cases():
    confidence = np.linspace(0, 1, 10)
    all_hits = np.ones(10, dtype=bool)
    for metric in (AUROC(), AUPRMiss(), FPR95()):
        assert np.isnan(metric(confidence, all_hits)), metric.name
    assert AUPRHit()(confidence, all_hits) == 1.0
    assert AURC()(confidence, all_hits) == 0.0 and EAURC()(confidence, all_hits) == 0.0
    no_hits = np.zeros(10, dtype=bool)
    assert np.isnan(AUPRHit()(confidence, no_hits)) and np.isnan(AUROC()(confidence, no_hits))
    assert AURC()(confidence, no_hits) == pytest.approx(1000.0)
    assert EAURC()(confidence, no_hits) == pytest.approx(0.0)


def test_perfect_and_reversed_detector():
    hit = np.array([True] * 8 + [False] * 2)
    confidence = hit.astype(float)
    assert AUROC()(confidence, hit) == 1.0 and AUROC()(-confidence, hit) == 0.0
    assert AUPRMiss()(confidence, hit) == 1.0 and AUPRHit()(confidence, hit) == 1.0
    assert FPR95()(confidence, hit) == 0.0 and FPR95()(-confidence, hit) == 1.0
    assert EAURC()(confidence, hit) == 0.0 and EAURC()(-confidence, hit) > 0


def test_the_shared_ranking_is_released_with_its_batch():
    import gc

    from probebench.plugins.metrics import failure

    confidence, hit = random_case(0, n=50)
    confidence, hit = confidence.copy(), hit.copy()
    confidence.flags.writeable = hit.flags.writeable = False
    first = AUROC()(confidence, hit)
    assert failure._last_ranking and AURC()(confidence, hit) == pytest.approx(1000 * geifman_aurc(confidence, hit))
    assert AUROC()(confidence, hit) == first
    del confidence, hit
    gc.collect()
    assert failure._last_ranking == []
