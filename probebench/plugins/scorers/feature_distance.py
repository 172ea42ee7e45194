"""Label-free scorers that measure how far a test sample's hidden features lie
from the classifier's training features (as in OpenOOD and FD-Shifts):
Mahalanobis distance to the nearest class-conditional Gaussian and the
distance to the k-th nearest training feature. Higher = more confident.

Both fit on the features of the classifier's training split at ``layer``
(cached like the prober's: the same artifact, so no second forward pass when
both run), in ``prepare``; scoring is matrix products on the batch's features.
"""

from __future__ import annotations

from typing import Any

from probebench.errors import UserError
from probebench.hookspecs import hookimpl

LAYER_HELP = "the hidden layer whose features are used (`probebench layers` lists them)"
TRAIN_VIEW = {"split": "train", "corruption": "none", "options": {}, "severity": 0}  # the prober's clean training view


def train_outputs(ctx: Any, layer: str) -> tuple[Any, Any]:
    """(logits [N, C], features [N, D]) in float64 of the classifier's training
    split, the features at ``layer``; cached."""
    from probebench.pipeline.features import cached_forward

    logits, features = cached_forward(ctx, ctx.train_images, (layer,), TRAIN_VIEW)
    return logits.double(), features[layer].flatten(1).double()


def train_features(ctx: Any, layer: str) -> Any:
    """Features [N, D] (float64) of the classifier's training split at ``layer``, cached."""
    return train_outputs(ctx, layer)[1]


def fit_gaussian(features: Any, labels: Any, num_classes: int) -> tuple[Any, Any]:
    """Class means [C, D] and the precision [D, D] of the shared covariance
    (pseudo-inverse, so a rank-deficient layer such as a ReLU output with dead
    units still works)."""
    import torch

    means = torch.zeros(num_classes, features.shape[1], dtype=features.dtype)
    means.index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).to(features.dtype)
    means /= counts[:, None]
    centred = features - means[labels]
    covariance = centred.T @ centred / len(features)
    return means, torch.linalg.pinv(covariance, hermitian=True)


def mahalanobis_confidence(features: Any, means: Any, precision: Any) -> Any:
    """-min_c (x - mu_c)^T P (x - mu_c) for each row x of ``features`` [N, D]."""
    projected = features @ precision
    squared = (
        (projected * features).sum(dim=1, keepdim=True)
        - 2 * projected @ means.T
        + ((means @ precision) * means).sum(dim=1)[None, :]
    )
    return -squared.min(dim=1).values


def kth_neighbour_confidence(train_normed: Any, features: Any, k: int, chunk: int = 2048) -> Any:
    """-(Euclidean distance to the k-th nearest row of ``train_normed``) of each
    L2-normalised row of ``features``; on unit vectors distance^2 = 2 - 2 cos."""
    import torch

    normed = torch.nn.functional.normalize(features.double(), dim=1)
    out = []
    for lo in range(0, len(normed), chunk):
        similarity = normed[lo : lo + chunk] @ train_normed.T
        kth = similarity.topk(k, dim=1).values[:, -1]
        out.append(-(2 - 2 * kth).clamp(min=0).sqrt())
    return torch.cat(out)


class Mahalanobis:
    """Mahalanobis confidence (Lee et al., NeurIPS 2018): class-conditional
    Gaussians with one shared covariance fitted on the training features at
    ``layer`` (true labels); the score is minus the squared Mahalanobis
    distance to the closest class mean. The paper's input preprocessing and
    layer ensemble are left out (FD-Shifts and OpenOOD also report this plain
    form). Higher = more confident."""

    name = "mahalanobis"
    version = "1"
    reference = (
        "Lee, Lee, Lee & Shin, A Simple Unified Framework for Detecting Out-of-Distribution Samples "
        "and Adversarial Attacks, NeurIPS 2018"
    )
    option_help = {"layer": LAYER_HELP}

    def __init__(self, layer: str = "fc_layer.4"):
        self.layer = layer

    def prepare(self, ctx):
        features = train_features(ctx, self.layer)
        self.means, self.precision = fit_gaussian(features, ctx.train_labels.long(), ctx.num_classes)

    def score(self, ctx, batch):
        return mahalanobis_confidence(batch.features(self.layer).flatten(1).double(), self.means, self.precision)


class KNN:
    """Deep nearest-neighbour confidence (Sun, Ming, Zhu & Li, ICML 2022): L2-normalise
    the features at ``layer``; the score is minus the distance to the k-th
    nearest normalised training feature (all training samples are kept).
    Higher = more confident."""

    name = "knn"
    version = "1"
    reference = "Sun, Ming, Zhu & Li, Out-of-Distribution Detection with Deep Nearest Neighbors, ICML 2022"
    option_help = {"layer": LAYER_HELP, "k": "which nearest training neighbour's distance is the score (>= 1)"}

    def __init__(self, layer: str = "fc_layer.4", k: int = 50):
        if k < 1:
            raise UserError(f"knn: k must be >= 1, got {k}")
        self.layer, self.k = layer, k

    def prepare(self, ctx):
        import torch

        train = train_features(ctx, self.layer)
        if self.k > len(train):
            raise UserError(f"knn: k = {self.k} exceeds the {len(train)} training samples; choose a smaller k")
        self.train_normed = torch.nn.functional.normalize(train, dim=1)

    def score(self, ctx, batch):
        return kth_neighbour_confidence(self.train_normed, batch.features(self.layer).flatten(1), self.k)


@hookimpl
def register_scorers():
    return [Mahalanobis, KNN]
