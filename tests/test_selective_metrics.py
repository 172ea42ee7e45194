"""AUAC (GradTrust's area under the accuracy-vs-percentile curve) equals a
brute-force loop, handles ties by expectation, and accepts [B, N] batches."""

import math

import numpy as np
import pytest

from probebench.plugins.metrics.selective import AUAC


def brute_force_auac(confidence, hit) -> float:
    """For p = 1..100: keep the ceil(p N / 100) most confident samples; ties at
    the cut-off contribute their group's mean hit rate; average the accuracies."""
    confidence, hit = np.asarray(confidence, dtype=float), np.asarray(hit, dtype=float)
    n = len(hit)
    accuracies = []
    for p in range(1, 101):
        keep = max(1, math.ceil(p * n / 100 - 1e-9))
        threshold = np.sort(confidence)[::-1][keep - 1]
        above = confidence > threshold
        tied = confidence == threshold
        kept_hits = hit[above].sum() + (keep - above.sum()) * hit[tied].mean()
        accuracies.append(kept_hits / keep)
    return float(np.mean(accuracies))


def random_case(seed: int, n: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    hit = rng.random(n) < 0.85
    confidence = rng.random(n) + 0.4 * hit
    if ties:
        confidence = np.round(confidence * 4) / 4
    return confidence, hit


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n", [7, 100, 333])
def test_auac_equals_brute_force(n, ties):
    for seed in range(3):
        confidence, hit = random_case(seed, n, ties)
        assert AUAC()(confidence, hit) == pytest.approx(brute_force_auac(confidence, hit), abs=1e-12)


def test_auac_without_ties_is_the_plain_prefix_accuracy():
    confidence, hit = random_case(5, 250)
    order = np.argsort(-confidence)
    expected = np.mean([hit[order[: math.ceil(p * 250 / 100)]].mean() for p in range(1, 101)])
    assert AUAC()(confidence, hit) == pytest.approx(expected, abs=1e-12)


def test_auac_batched_rows_equal_one_at_a_time_and_ignore_order():
    rows = [random_case(seed, 120, ties=seed % 2 == 0) for seed in range(6)]
    confidence = np.stack([c for c, _ in rows])
    hit = np.stack([h for _, h in rows])
    batched = AUAC()(confidence, hit)
    assert batched.shape == (6,)
    np.testing.assert_allclose(batched, [AUAC()(c, h) for c, h in rows], atol=1e-12)
    shuffled = np.random.default_rng(0).permutation(120)
    np.testing.assert_allclose(AUAC()(confidence[:, shuffled], hit[:, shuffled]), batched, atol=1e-12)


def test_auac_reference_points():
    hit = np.array([True] * 90 + [False] * 10)
    assert AUAC()(np.ones(100), hit) == pytest.approx(0.9)  # a constant score cannot rank
    perfect = AUAC()(hit.astype(float), hit)
    assert perfect == pytest.approx(np.mean([min(1.0, 90 / p) for p in range(1, 101)]))
    assert AUAC()(-hit.astype(float), hit) < 0.9 < perfect
    assert AUAC.higher_is_better


def test_auac_of_presorted_rows_equals_auac_of_shuffled_rows():
    """The bootstrap hands metrics rows sorted ascending (a fast path skips the
    sort); with ties, the value must not depend on that order."""
    import numpy as np

    from probebench.plugins.metrics.selective import AUAC

    rng = np.random.default_rng(0)
    conf = rng.integers(0, 20, size=(50, 200)).astype(float)  # many ties
    hit = rng.random((50, 200)) < 0.8
    order = np.argsort(conf, axis=1, kind="stable")
    sorted_conf, sorted_hit = np.take_along_axis(conf, order, 1), np.take_along_axis(hit, order, 1)
    np.testing.assert_allclose(AUAC()(sorted_conf, sorted_hit), AUAC()(conf, hit), rtol=0, atol=1e-12)
