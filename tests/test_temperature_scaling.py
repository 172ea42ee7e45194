"""Temperature scaling: the fitted temperature against a direct minimisation of
the validation NLL, and ``ts:msp`` beside ``msp`` in a run (ECE before/after)."""

import numpy as np
import pandas as pd
import pytest
import torch

from probebench.cli import app
from probebench.plugins.metrics.failure import ECE
from probebench.plugins.scorers.temperature import fit_inverse_temperature


def overconfident(n=2000, classes=5, scale=3.0, seed=0):
    """Labels drawn from softmax(z), logits reported as scale * z: over-confident by ``scale``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=(n, classes))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return scale * z, labels


@pytest.mark.parametrize("seed", range(3))
def test_fitted_temperature_minimises_the_nll_like_scipy(seed):
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    logits, labels = overconfident(seed=seed, scale=1 + seed)

    def nll(beta):
        scaled = beta * logits
        return np.mean(logsumexp(scaled, axis=1) - scaled[np.arange(len(labels)), labels])

    reference = minimize_scalar(nll, bounds=(1e-3, 1e3), method="bounded", options={"xatol": 1e-10}).x
    got = fit_inverse_temperature(torch.tensor(logits), torch.tensor(labels))
    assert got == pytest.approx(reference, rel=1e-6)
    assert 1 / got == pytest.approx(1 + seed, rel=0.15)  # recovers the over-confidence factor


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_msp():
    logits, labels = overconfident(scale=3.0)
    val, test = slice(0, 1000), slice(1000, None)
    beta = fit_inverse_temperature(torch.tensor(logits[val]), torch.tensor(labels[val]))
    t = torch.tensor(logits[test])
    hit = t.argmax(dim=1).numpy() == labels[test]
    before = ECE()(t.softmax(dim=1).max(dim=1).values.numpy(), hit)
    after = ECE()((beta * t).softmax(dim=1).max(dim=1).values.numpy(), hit)
    assert after < before / 2


def test_ts_msp_runs_beside_msp_and_needs_a_validation_split(runner, tiny_registry, tmp_path):
    extra = """
    [suite.tiny-val]
    dataset = { name = "mnist-5k", limit = 300 }
    classifier = { name = "cnn", epochs = 1, width = 8 }
    scorers = ["msp", "ts:msp", "ts:entropy"]
    metrics = ["accuracy", "auroc", "ece"]
    validation = 60
    seeds = [0]
    bootstrap = { resamples = 20 }
    """
    registry = str(tiny_registry(extra=extra))
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "tiny-val", "--registry", registry, "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "results.csv")
    ece = rows[rows["metric"] == "ece"].set_index("method")["value"]
    assert np.isfinite(ece[["msp", "ts:msp"]]).all()
    scores = pd.read_csv(out / "scores.csv.gz")
    assert not np.allclose(scores["msp"], scores["ts:msp"])  # the temperature moved the confidences

    registry = str(tiny_registry(scorers='["msp", "ts:msp"]'))
    result = runner.invoke(
        app, ["run", "tiny", "--registry", registry, "--out", str(tmp_path / "b"), "--device", "cpu"]
    )
    assert "add validation = N" in result.output and "Traceback" not in result.output
