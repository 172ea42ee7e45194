"""Mahalanobis, kNN and ODIN confidences against direct computations (numpy's
covariance and inverse, scikit-learn's NearestNeighbors)."""

import numpy as np
import pytest
import torch

from probebench.plugins.scorers.feature_distance import (
    fit_gaussian,
    kth_neighbour_confidence,
    mahalanobis_confidence,
)


def case(seed, n=120, d=6, classes=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    features = rng.normal(size=(n, d)) + labels[:, None]
    return features, labels, rng.normal(size=(40, d)) + 1


@pytest.mark.parametrize("seed", range(3))
def test_mahalanobis_equals_a_direct_numpy_computation(seed):
    features, labels, test = case(seed)
    means = np.stack([features[labels == c].mean(axis=0) for c in range(3)])
    centred = features - means[labels]
    precision = np.linalg.inv(centred.T @ centred / len(features))
    expected = [-min((x - m) @ precision @ (x - m) for m in means) for x in test]
    fitted = fit_gaussian(torch.tensor(features), torch.tensor(labels), 3)
    got = mahalanobis_confidence(torch.tensor(test), *fitted).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("k", [1, 5, 50])
def test_knn_equals_sklearn_kth_neighbour_distance_on_normalised_features(k):
    from sklearn.neighbors import NearestNeighbors

    features, _labels, test = case(k)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    distances, _ = NearestNeighbors(n_neighbors=k).fit(unit(features)).kneighbors(unit(test))
    train_normed = torch.nn.functional.normalize(torch.tensor(features), dim=1)
    got = kth_neighbour_confidence(train_normed, torch.tensor(test), k, chunk=7).numpy()
    np.testing.assert_allclose(got, -distances[:, -1], atol=1e-7)


def small_model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)
    ).eval()


def test_odin_with_no_perturbation_and_unit_temperature_is_msp():
    from probebench.plugins.scorers.odin import odin_confidence

    model, images = small_model(0), torch.rand(25, 1, 4, 4)
    msp = model(images).softmax(dim=1).max(dim=1).values.detach()
    got = odin_confidence(model, images, temperature=1.0, epsilon=0.0, batch_size=7, device="cpu")
    torch.testing.assert_close(got, msp, rtol=0, atol=1e-7)


def test_odin_perturbation_raises_the_tempered_softmax_score():
    """A small step along the sign of the gradient raises each sample's own
    tempered max-softmax (what the perturbation is for)."""
    from probebench.plugins.scorers.odin import odin_confidence

    model, images = small_model(1), torch.rand(25, 1, 4, 4)
    plain = odin_confidence(model, images, temperature=10.0, epsilon=0.0, batch_size=25, device="cpu")
    moved = odin_confidence(model, images, temperature=10.0, epsilon=1e-3, batch_size=25, device="cpu")
    assert (moved >= plain - 1e-7).all() and (moved > plain).any()


def head_case(seed, n=200, d=12, classes=4):
    rng = np.random.default_rng(seed)
    features = np.maximum(rng.normal(size=(n, d)) + rng.integers(0, 2, (n, 1)), 0)  # ReLU-like, some zeros
    weight, bias = rng.normal(size=(classes, d)), rng.normal(size=classes)
    test = np.maximum(rng.normal(size=(30, d)) * 1.5, 0)
    return features, weight, bias, test


@pytest.mark.parametrize("seed", range(3))
def test_vim_equals_a_direct_numpy_computation(seed):
    from scipy.special import logsumexp

    from probebench.plugins.scorers.head_features import fit_vim

    features, weight, bias, test = head_case(seed)
    dim = 5
    # the paper's recipe written out: origin u = -pinv(W) b, principal space of (h - u)'s second moment
    u = -np.linalg.pinv(weight) @ bias
    moment = (features - u).T @ (features - u) / len(features)
    values, vectors = np.linalg.eigh(moment)
    residual_space = vectors[:, np.argsort(values)[::-1][dim:]]
    train_logits = features @ weight.T + bias
    alpha = train_logits.max(axis=1).mean() / np.linalg.norm((features - u) @ residual_space, axis=1).mean()
    expected = logsumexp(test @ weight.T + bias, axis=1) - alpha * np.linalg.norm((test - u) @ residual_space, axis=1)

    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    origin, basis, fitted_alpha = fit_vim(t(features), t(train_logits), t(weight), t(bias), dim)
    got = (t(test) @ t(weight).T + t(bias)).logsumexp(dim=1) - fitted_alpha * ((t(test) - origin) @ basis).norm(dim=1)
    assert fitted_alpha == pytest.approx(alpha, rel=1e-9)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-9)


def test_react_equals_a_direct_computation_and_is_energy_without_clipping():
    from scipy.special import logsumexp

    from probebench.plugins.scorers.head_features import react_energy

    features, weight, bias, test = head_case(0)
    threshold = np.percentile(features, 90)
    expected = logsumexp(np.minimum(test, threshold) @ weight.T + bias, axis=1)
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    np.testing.assert_allclose(react_energy(t(test), t(weight), t(bias), threshold).numpy(), expected, rtol=1e-12)
    unclipped = react_energy(t(test), t(weight), t(bias), float("inf")).numpy()
    np.testing.assert_allclose(unclipped, logsumexp(test @ weight.T + bias, axis=1), rtol=1e-12)
    assert (expected <= unclipped + 1e-12).any() and not np.allclose(expected, unclipped)


def test_react_and_vim_run_end_to_end_and_refuse_a_layer_the_head_does_not_read(runner, tiny_registry, tmp_path):
    import pandas as pd

    from probebench.cli import app

    registry = str(tiny_registry(scorers='["energy", "react", "vim"]'))
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "tiny", "--registry", registry, "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "results.csv")
    auroc = rows[rows["metric"] == "auroc"].set_index("method")["value"]
    # a 1-epoch classifier: the values mean little (the numpy references above test the formulas)
    assert set(auroc.index) >= {"react", "vim"} and np.isfinite(auroc[["react", "vim"]]).all()
    scores = pd.read_csv(out / "scores.csv.gz")
    assert not np.allclose(scores["react"], scores["energy"]) and not np.allclose(scores["vim"], scores["energy"])

    bad = str(tiny_registry(scorers='[{ name = "vim", layer = "fc_layer.1" }]'))
    result = runner.invoke(app, ["run", "tiny", "--registry", bad, "--out", str(tmp_path / "bad"), "--device", "cpu"])
    assert "the head" in result.output and "fc_layer.1" in result.output and "Traceback" not in result.output
