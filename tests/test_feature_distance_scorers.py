"""Mahalanobis and kNN confidences against direct computations (numpy's
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
