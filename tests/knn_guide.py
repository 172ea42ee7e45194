"""A third-party prober scorer for tests, registered in-process (its module
name goes in a registry's plugin list): soft k-nearest-neighbour P(hit) on a
classifier's hidden features.

``knn-guide`` declares the ``Guide`` capability (``guides_correctors = True``
and ``p_hit``), so it can guide correctors although its name is not
``prober``; ``prober-knn`` is the same scorer without the declaration, which a
suite with correctors must reject rather than silently ignore.
"""

from __future__ import annotations

import torch

from probebench.hookspecs import hookimpl


class KnnGuide:
    """P(hit) = the hit share among the ``k`` training images nearest in the
    features at ``layer``, weighted by softmax(-squared distance /
    ``temperature``); the training images' hits are the classifier's own
    outcomes. Differentiable in the features, hence in the images."""

    name = "knn-guide"
    version = "1"
    guides_correctors = True
    option_help = {"layer": "hidden layer", "k": "neighbours", "temperature": "softmax temperature"}

    def __init__(self, layer: str = "fc_layer.4", k: int = 10, temperature: float = 1.0):
        self.layer, self.k, self.temperature = layer, k, temperature

    def prepare(self, ctx) -> None:
        logits, features = ctx.forward(ctx.train_images, (self.layer,))
        self.bank = features[self.layer]
        self.hit = (logits.argmax(dim=1) == ctx.train_labels).float()
        self.classifier = ctx.classifier

    def _p_hit(self, features: torch.Tensor) -> torch.Tensor:
        bank = self.bank.to(features.device)
        # squared distances without cdist, whose gradient is undefined where two points coincide
        squared = (features**2).sum(1, keepdim=True) - 2 * features @ bank.T + (bank**2).sum(1)
        near = squared.topk(min(self.k, len(bank)), dim=1, largest=False)
        weights = (-near.values / self.temperature).softmax(dim=1)
        return (weights * self.hit.to(features.device)[near.indices]).sum(dim=1)

    def score(self, ctx, batch):
        return self._p_hit(batch.features(self.layer))

    def p_hit(self, images: torch.Tensor) -> torch.Tensor:
        captured = []
        module = self.classifier.get_submodule(self.layer)
        handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out.flatten(1)))
        try:
            self.classifier(images)
        finally:
            handle.remove()
        return self._p_hit(captured[0])


class ProberKnn(KnnGuide):
    """The same scorer, without declaring that it can guide correctors."""

    name = "prober-knn"
    guides_correctors = False


@hookimpl
def register_scorers():
    return [KnnGuide, ProberKnn]
