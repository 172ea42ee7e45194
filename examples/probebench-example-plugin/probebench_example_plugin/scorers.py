"""``knn-distance``: deep k-nearest-neighbour confidence on penultimate features."""

from __future__ import annotations


def penultimate_layer(model) -> str:
    """The module whose output feeds the model's last Linear layer: the last
    module before that Linear in definition order that does not contain it."""
    import torch

    names = [name for name, _ in model.named_modules()]
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    if not linear:
        raise ValueError(f"{type(model).__name__} has no Linear layer; give knn-distance a layer option")
    last = linear[-1]
    for name in reversed(names[: names.index(last)]):
        if name and not last.startswith(name + "."):
            return name
    raise ValueError(f"no layer comes before {last!r}; give knn-distance a layer option")


class KNNDistance:
    """Minus the distance from a sample's L2-normalised features to its k-th
    nearest neighbour among the classifier's training samples.

    Higher = closer to what the classifier was trained on = more confident. The
    features are those at ``layer`` (default: the input of the last Linear
    layer). The training features are computed once per trained classifier in
    ``prepare`` and cached with ``ctx.artifact``.
    """

    name = "knn-distance"
    version = "1"
    reference = (
        "Sun, Ming, Zhu, Li. Out-of-Distribution Detection with Deep Nearest Neighbors. ICML 2022. arXiv:2204.06507"
    )
    option_help = {
        "k": "which nearest training neighbour to measure the distance to",
        "layer": "module name whose output is the feature ('auto' = the input of the last Linear layer)",
        "max_train": "use at most this many training samples as neighbours (the first ones)",
    }

    def __init__(self, k: int = 10, layer: str = "auto", max_train: int = 20000):
        from probebench.errors import UserError

        if k < 1:
            raise UserError(f"knn-distance: k must be >= 1, got {k}; e.g. k = 10")
        if max_train < 1:
            raise UserError(f"knn-distance: max_train must be >= 1, got {max_train}")
        self.k, self.layer, self.max_train = k, layer, max_train
        self._layer: str | None = None
        self._bank = None

    def prepare(self, ctx) -> None:
        layer = penultimate_layer(ctx.classifier) if self.layer == "auto" else self.layer

        def build() -> dict:
            _logits, features = ctx.forward(ctx.train_images[: self.max_train], (layer,))
            return {"bank": _normalise(features[layer])}

        payload = ctx.artifact(
            "knn-bank", {"layer": layer, "max_train": self.max_train, "version": self.version}, build
        )
        self._layer, self._bank = layer, payload["bank"]

    def score(self, ctx, batch):
        import torch

        if self._bank is None:
            raise RuntimeError("knn-distance: prepare(ctx) was not called")
        features = _normalise(batch.features(self._layer))
        k = min(self.k, len(self._bank))
        distances = torch.cdist(features, self._bank)
        return -distances.topk(k, dim=1, largest=False).values[:, -1]


def _normalise(features):
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
