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
