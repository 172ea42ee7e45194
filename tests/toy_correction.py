"""A correction problem whose answer is known, for tests and benchmarks.

Images are 1x4x4 with mean brightness m. Every image's label is 0. A linear
classifier predicts 0 when m > 0.55 and 1 otherwise, so images with m in
[0.45, 0.53] are misses and images with m in [0.6, 0.8] are hits. The prober
reads the classifier's logits (its "features" at the Linear layer) and says
P(hit) = 0.1 + 0.8 * sigmoid(40 * (m - 0.55)): like a prober trained with
label smoothing 0.2, it never leaves (0.1, 0.9), so a P(hit) > 0.92 stop can
never fire. Raising P(hit) means raising m, which crosses the boundary.
"""

from __future__ import annotations

import torch
from torch import nn

from probebench.pipeline.context import Context
from probebench.pipeline.features import resolve_layer

BOUNDARY = 0.55
GAIN = 20.0  # logit slope of the classifier in m
SHARPNESS = 40.0  # of the prober in m


class _Captured(Exception):
    """Raised by the hook to skip the layers after the probed one."""


class LayerProber(nn.Module):
    """P(hit) of images = ``head(features of classifier at layer)``, differentiable.

    ``head`` maps flattened features [N, D] to P(hit) [N]. The classifier's
    forward pass stops at ``layer``.
    """

    def __init__(self, classifier: nn.Module, layer: str, head):
        super().__init__()
        self.classifier = classifier
        self.module = resolve_layer(classifier, layer)
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        captured = []

        def hook(_module, _inputs, output):
            captured.append(output)
            raise _Captured

        handle = self.module.register_forward_hook(hook)
        try:
            self.classifier(images)
        except _Captured:
            pass
        finally:
            handle.remove()
        return self.head(captured[0].flatten(1))


def classifier() -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.full((16,), GAIN / 16), torch.full((16,), -GAIN / 16)]))
        model[1].bias.copy_(torch.tensor([-GAIN * BOUNDARY, GAIN * BOUNDARY]))
    return model.eval()


def prober(model: nn.Module) -> LayerProber:
    """P(hit) from the classifier's logits (layer "1"): l0 - l1 = 2 * GAIN * (m - BOUNDARY)."""

    def head(features):
        margin = (features[:, 0] - features[:, 1]) / (2 * GAIN)
        return 0.1 + 0.8 * torch.sigmoid(SHARPNESS * margin)

    return LayerProber(model, "1", head)


def prober_of_m(m: torch.Tensor) -> torch.Tensor:
    return 0.1 + 0.8 * torch.sigmoid(SHARPNESS * (m - BOUNDARY))


def images_with_means(means, seed: int = 0) -> torch.Tensor:
    """Images whose pixel means are ``means``: a zero-mean pattern around m."""
    means = torch.as_tensor(means, dtype=torch.float32)
    pattern = torch.rand(len(means), 1, 4, 4, generator=torch.Generator().manual_seed(seed)) * 0.1 - 0.05
    pattern = pattern - pattern.mean(dim=(1, 2, 3), keepdim=True)
    return (means.view(-1, 1, 1, 1) + pattern).clamp(0, 1)


def cell(n_miss: int = 6, n_hit: int = 10, seed: int = 0):
    """(images, labels): misses first (m in [0.45, 0.53]), then hits (m in [0.6, 0.8])."""
    means = torch.cat([torch.linspace(0.45, 0.53, n_miss), torch.linspace(0.6, 0.8, n_hit)])
    return images_with_means(means, seed), torch.zeros(len(means), dtype=torch.long)


class IdentityFlow:
    """encode = decode = identity."""

    def encode(self, x):
        return x.clone()

    def decode(self, z):
        return z

    def log_prob(self, x):
        return torch.zeros(len(x))


class SplitFlow:
    """An affine invertible map whose latent is a list of two tensors (like a
    multiscale flow): top rows and bottom rows, each mapped to 2x - 1."""

    def encode(self, x):
        return [x[:, :, :2] * 2 - 1, x[:, :, 2:] * 2 - 1]

    def decode(self, z):
        return (torch.cat(z, dim=2) + 1) / 2

    def log_prob(self, x):
        return torch.zeros(len(x))


def context(
    generator=None, *, batch_size: int = 64, seed: int = 0, level: float | None = None, threshold: float | None = 0.5
) -> Context:
    """The toy as a corrector receives it: the classifier, its prober, a flow
    (identity unless given), and the stop level and flag threshold when given."""
    model = classifier()
    train_images, train_labels = cell(20, 40, seed=1)
    return Context(
        model,
        "toy",
        2,
        (1, 4, 4),
        torch.device("cpu"),
        seed,
        batch_size,
        train_images,
        train_labels,
        lambda stage, parts, build: build(),
        lambda other: model,
        generator=generator or IdentityFlow(),
        prober=prober(model),
        prober_hit_level=level,
        prober_threshold=threshold,
    )


def hit_level() -> float:
    """The median P(hit) of the toy's hits (m spread over [0.6, 0.8])."""
    return float(prober_of_m(torch.linspace(0.6, 0.8, 41)).median())
