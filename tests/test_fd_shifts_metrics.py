"""The FD-Shifts-parity metrics (AUGRC, e-AUGRC, aurc:fd, fpr@95tpr,
risk@coverage, coverage@risk, MCE, adaptive ECE) against references written
from their definitions here (a loop over unique thresholds, the trapezoid of
numpy, scikit-learn's roc_curve), on random and tied scores, batched and not."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from probebench.errors import UserError
from probebench.plugins.metrics import calibration, risk_coverage
from probebench.plugins.metrics.calibration import MCE, AdaptiveECE
from probebench.plugins.metrics.failure import AURC
from probebench.plugins.metrics.risk_coverage import (
    AUGRC,
    EAUGRC,
    CoverageAtRisk,
    FPRAt95TPRHits,
    RiskAtCoverage,
)

NEW = [cls() for cls in risk_coverage.register_metrics() + calibration.register_metrics()] + [AURC("fd")]


def random_case(seed: int, n: int = 300, ties: bool = False):
    rng = np.random.default_rng(seed)
    hit = rng.random(n) < 0.8
    confidence = (rng.random(n) + 0.5 * hit) / 1.5  # in [0, 1]
    if ties:
        confidence = np.round(confidence * 5) / 5
    return confidence, hit


def threshold_curve(confidence, hit):
    """(coverage, misses accepted, accepted) at each unique threshold, accepting conf >= t,
    from the highest threshold down."""
    points = []
    for t in np.unique(confidence)[::-1]:
        accepted = confidence >= t
        points.append((accepted.mean(), (~hit & accepted).sum(), accepted.sum()))
    return np.array(points, dtype=float).T


def reference_augrc(confidence, hit):
    coverage, misses, _ = threshold_curve(confidence, hit)
    generalized_risk = misses / len(hit)
    return np.trapezoid(np.r_[0.0, generalized_risk], np.r_[0.0, coverage])


def reference_fd_aurc(confidence, hit):
    coverage, misses, accepted = threshold_curve(confidence, hit)
    risk = misses / accepted
    return np.trapezoid(np.r_[risk[0], risk], np.r_[0.0, coverage])


def torch_uncertainty_augrc(confidence, hit):
    """torch-uncertainty's AUGRC as FACTS.md describes it: generalized risk at
    k/N for k = 1..N (most confident first), trapezoid without a 0 point,
    divided by (1 - 1/N)."""
    n = len(hit)
    miss = ~hit[np.argsort(-confidence, kind="stable")]
    risk = np.cumsum(miss) / n
    return np.trapezoid(risk, np.arange(1, n + 1) / n) / (1 - 1 / n)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_augrc_and_fd_aurc_equal_the_trapezoid_over_unique_thresholds(seed, ties):
    confidence, hit = random_case(seed, ties=ties)
    assert AUGRC()(confidence, hit) == pytest.approx(1000 * reference_augrc(confidence, hit), abs=1e-9)
    err = (~hit).mean()
    expected = 1000 * (reference_augrc(confidence, hit) - err**2 / 2)
    assert EAUGRC()(confidence, hit) == pytest.approx(expected, abs=1e-9)
    assert AURC("fd")(confidence, hit) == pytest.approx(1000 * reference_fd_aurc(confidence, hit), abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_fd_aurc_differs_from_the_mean_convention_by_half_the_end_risks(seed):
    confidence, hit = random_case(seed)
    order = np.argsort(-confidence)
    risks = np.cumsum(~hit[order]) / np.arange(1, len(hit) + 1)
    difference = (risks[0] - risks[-1]) / (2 * len(hit))
    assert AURC("fd")(confidence, hit) - AURC()(confidence, hit) == pytest.approx(1000 * difference, abs=1e-9)


@pytest.mark.parametrize("first_is_miss", [False, True])
def test_torch_uncertainty_conversion_stated_in_the_docstring(first_is_miss):
    confidence, hit = random_case(5)
    hit[np.argmax(confidence)] = not first_is_miss
    n = len(hit)
    converted = (AUGRC()(confidence, hit) / 1000 - first_is_miss / (2 * n**2)) * n / (n - 1)
    assert converted == pytest.approx(torch_uncertainty_augrc(confidence, hit), abs=1e-12)
    assert "(AUGRC/1000 - E1 / (2 N^2)) x N / (N - 1)" in " ".join(AUGRC.__doc__.split())


def test_augrc_of_perfect_and_constant_scores():
    hit = np.array([True] * 90 + [False] * 10)
    assert EAUGRC()(hit.astype(float), hit) == pytest.approx(0, abs=1e-12)
    assert AUGRC()(np.zeros(100), hit) == pytest.approx(1000 * 0.1 / 2, abs=1e-12)  # random: err / 2


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_fpr_at_95_tpr_equals_sklearn_with_hits_positive(seed, ties):
    confidence, hit = random_case(seed, ties=ties)
    fpr, tpr, _ = roc_curve(hit, confidence, drop_intermediate=False)
    assert FPRAt95TPRHits()(confidence, hit) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)


def brute_expected_risk(confidence, hit, k, draws=None):
    """Expected miss rate among the k most confident, ties broken at random: the
    groups strictly above the cut-off count fully, the cut group by its mean."""
    order = np.argsort(-confidence, kind="stable")
    cut = confidence[order[k - 1]]
    above = confidence > cut
    tied = confidence == cut
    expected_misses = (~hit & above).sum() + (k - above.sum()) * (~hit[tied]).mean()
    return expected_misses / k


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("level", [1, 50, 80, 95, 100])
def test_risk_at_coverage(level, ties):
    confidence, hit = random_case(level, ties=ties)
    k = int(np.ceil(level * len(hit) / 100))
    expected = brute_expected_risk(confidence, hit, k)
    assert RiskAtCoverage(str(level))(confidence, hit) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("level", [2, 5, 10, 30])
def test_coverage_at_risk(level, ties):
    confidence, hit = random_case(level, ties=ties)
    n = len(hit)
    ok = [k for k in range(1, n + 1) if brute_expected_risk(confidence, hit, k) <= level / 100 + 1e-12]
    assert CoverageAtRisk(str(level))(confidence, hit) == pytest.approx(max(ok, default=0) / n, abs=1e-12)


@pytest.mark.parametrize("name", ["risk@coverage:0", "risk@coverage:abc", "coverage@risk:150"])
def test_a_bad_level_is_one_clear_error(name):
    cls = RiskAtCoverage if name.startswith("risk") else CoverageAtRisk
    with pytest.raises(UserError, match=r"percentage in \(0, 100\].*e\.g\."):
        cls(name.split(":")[1])


def binned(confidence, hit, edges_of):
    """Per-bin (size, accuracy, mean confidence) for a bin-membership function."""
    return [(m.sum(), hit[m].mean(), confidence[m].mean()) for m in edges_of(confidence) if m.any()]


def width_bins(confidence, bins=15):
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        out.append((confidence > lo) & (confidence <= hi) if b else (confidence >= 0) & (confidence <= hi))
    return out


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_mce_is_the_worst_equal_width_bin(seed, ties):
    confidence, hit = random_case(seed, ties=ties)
    worst = max(abs(acc - conf) for _, acc, conf in binned(confidence, hit, width_bins))
    assert MCE()(confidence, hit) == pytest.approx(worst, abs=1e-12)
    assert np.isnan(MCE()(confidence * 2, hit))


@pytest.mark.parametrize("seed", range(3))
def test_adaptive_ece_equals_equal_mass_bins_without_ties(seed):
    confidence, hit = random_case(seed, n=301)
    order = np.argsort(confidence)
    total = 0.0
    for part in np.array_split(order, 15):
        total += len(part) / len(hit) * abs(hit[part].mean() - confidence[part].mean())
    assert AdaptiveECE()(confidence, hit) == pytest.approx(total, abs=1e-12)


def test_adaptive_ece_with_ties_does_not_depend_on_their_order():
    confidence, hit = random_case(1, ties=True)
    values = {
        round(AdaptiveECE()(confidence[p], hit[p]), 12) for p in map(np.random.default_rng(0).permutation, [300] * 5)
    }
    assert len(values) == 1


@pytest.mark.parametrize("metric", NEW, ids=lambda m: m.name)
def test_batched_rows_equal_one_at_a_time_and_sorted_read_only_input(metric):
    rows = [random_case(seed, n=120, ties=seed % 2 == 0) for seed in range(4)]
    confidence, hit = np.stack([c for c, _ in rows]), np.stack([h for _, h in rows])
    np.testing.assert_allclose(metric(confidence, hit), [metric(c, h) for c, h in rows], atol=1e-12)
    c, h = rows[0]
    order = np.argsort(c, kind="stable")
    sc, sh = c[order][None].copy(), h[order][None].copy()
    sc.flags.writeable = sh.flags.writeable = False
    np.testing.assert_allclose(metric(sc, sh), [metric(c, h)], atol=1e-12)


def test_the_new_metrics_are_registered_and_show_their_conventions(tmp_path):
    from typer.testing import CliRunner

    from probebench.cli import app

    out = CliRunner().invoke(app, ["show", "metric", "augrc"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "Traub" in text and "torch-uncertainty" in text and "recommends" in text
    out = CliRunner().invoke(app, ["show", "metric", "fpr@95tpr"])
    assert out.exit_code == 0 and "fpr95" in out.output


# -- classifier-level metrics of the class probabilities ----------------------------
def random_probabilities(seed: int, n: int = 200, classes: int = 10):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * 3
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probabilities, rng.integers(0, classes, n)


@pytest.mark.parametrize("seed", range(3))
def test_nll_and_brier_equal_sklearn_and_the_one_hot_formula(seed):
    from sklearn.metrics import log_loss

    from probebench.plugins.metrics.calibration import NLL, Brier

    probabilities, labels = random_probabilities(seed)
    nll = NLL().per_sample(probabilities, labels).mean()
    assert nll == pytest.approx(log_loss(labels, probabilities, labels=range(10)), abs=1e-9)
    one_hot = np.eye(10)[labels]
    assert Brier().per_sample(probabilities, labels).mean() == pytest.approx(
        ((probabilities - one_hot) ** 2).sum(axis=1).mean(), abs=1e-12
    )


def test_probability_metrics_are_classifier_rows_with_intervals_from_the_shared_resamples():
    from probebench.evaluate import Resamples, evaluate_cell, percentile_interval
    from probebench.plugins.metrics.calibration import NLL
    from probebench.plugins.metrics.failure import AUROC
    from probebench.suite import Bootstrap

    probabilities, labels = random_probabilities(0)
    hit = probabilities.argmax(axis=1) == labels
    losses = NLL().per_sample(probabilities, labels)
    boot = Bootstrap(resamples=200, confidence=0.9, seed=3)
    rows = evaluate_cell(
        {"msp": probabilities.max(axis=1)}, hit, {"auroc": AUROC(), "nll": NLL()}, boot, {"nll": losses}
    )
    (nll,) = [r for r in rows if r["metric"] == "nll"]
    assert nll["method"] == "-" and nll["value"] == pytest.approx(losses.mean(), abs=1e-12)
    indices = np.random.default_rng(3).integers(0, len(hit), size=(200, len(hit)))
    expected = percentile_interval(losses[indices].mean(axis=1), 0.9)
    assert (nll["ci_low"], nll["ci_high"]) == pytest.approx(expected, abs=1e-12)
    assert Resamples.draw(len(hit), 200, 3).counts.sum() == 200 * len(hit)


def test_a_run_reports_the_new_metrics_and_saves_the_per_sample_losses(runner, tiny_registry, tmp_path):
    import pandas as pd

    from probebench.cli import app
    from probebench.plugins.metrics.calibration import Brier

    registry = tiny_registry(
        """
        [suite.tiny-fd]
        dataset = { name = "mnist-5k", limit = 300 }
        classifier = { name = "cnn", epochs = 1, width = 8 }
        scorers = [
            "msp", "entropy", "mahalanobis", { name = "knn", k = 5 }, "odin",
            { name = "prober", source = "train", min_misses = 2, prober_options = { epochs = 2 } },
            { name = "prober", label = "confidnet", prober = "confidnet", source = "train", min_misses = 2, prober_options = { epochs = 2, hidden = [32] } },
        ]
        metrics = ["augrc", "e-augrc", "aurc:fd", "fpr@95tpr", "risk@coverage:80", "coverage@risk:5", "nll", "brier", "adaptive-ece"]
        seeds = [0]
        bootstrap = { resamples = 20 }
        """
    )
    out = tmp_path / "fd"
    result = runner.invoke(app, ["run", "tiny-fd", "--registry", str(registry), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv")
    by = {(r.method, r.metric): r.value for r in table.itertuples()}
    missing = {(r.method, r.metric) for r in table.itertuples() if np.isnan(r.value)}
    # scores that are not probabilities have no adaptive ECE (confidnet's is a log-odds)
    not_probabilities = ("entropy", "mahalanobis", "knn", "confidnet")
    assert missing == {(method, "adaptive-ece") for method in not_probabilities}
    assert set(table["metric"]) == {
        "augrc",
        "e-augrc",
        "aurc:fd",
        "fpr@95tpr",
        "risk@coverage:80",
        "coverage@risk:5",
        "nll",
        "brier",
        "adaptive-ece",
    }
    assert ("-", "nll") in by and ("msp", "nll") not in by and ("msp", "augrc") in by
    scores = pd.read_csv(out / "scores.csv.gz")
    assert by[("-", "brier")] == pytest.approx(scores["brier:per-sample"].mean(), abs=1e-5)
    assert by[("-", "nll")] == pytest.approx(scores["nll:per-sample"].mean(), abs=1e-5)
    hit = scores["hit"].to_numpy() == 1
    assert by[("msp", "augrc")] == pytest.approx(AUGRC()(scores["msp"].to_numpy(), hit), abs=1e-3)  # results.csv rounds
    assert 0 <= by[("-", "brier")] <= 2 and Brier.higher_is_better is False
    assert scores["mahalanobis"].notna().all() and (scores["knn"] <= 0).all() and scores["odin"].between(0, 1).all()
    # every value recomputes from scores.csv.gz to the 6 digits results.csv keeps (scores are stored exactly)
    for method in ("msp", "odin", "mahalanobis", "knn", "prober", "confidnet"):
        for name, metric in (("augrc", AUGRC()), ("aurc:fd", AURC("fd"))):
            recomputed = metric(scores[method].to_numpy(), hit)
            assert by[(method, name)] == pytest.approx(recomputed, rel=1e-5, abs=1e-9), (method, name)
    # ConfidNet sits beside the prober, trained on the same images' outcomes (its facts say so)
    facts = json.loads((out / "run.json").read_text())["component_facts"]["0"]
    assert facts["confidnet"]["loss"] == "mse-tcp" and "loss" not in facts["prober"]
    same = ("n_hit", "n_miss", "source", "feature_dim")
    assert {k: facts["confidnet"][k] for k in same} == {k: facts["prober"][k] for k in same}
    assert not scores["confidnet"].between(0, 1).all()  # a log-odds, not a probability
    assert not scores["confidnet"].equals(scores["prober"])
