"""Built-in oracles: the true label of a pool image, the label of the image
a generated one was made from, and an ensemble standing in for a human
annotator of generated images."""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


class PoolLabel:
    """The true label of a pool image; cannot label generated images (it has
    none): the oracle of every strategy's pool picks."""

    name = "pool-label"
    version = "1"
    labels_generated = False

    def label(self, ctx, images, source_labels):
        return source_labels.clone()


class SourceLabel(PoolLabel):
    """The true label of the pool image a generated image was made from: assumes
    an edit keeps the identity of its source (the reference's identity
    question; the active stage reports how often ``ensemble-oracle`` disagrees)."""

    name = "source-label"
    version = "1"
    labels_generated = True


class EnsembleOracle:
    """A documented stand-in for a human annotator: ``members`` classifiers of
    the suite, trained with other seeds on every labelled training image
    including the pool, label an image by their mean softmax. Its accuracy on
    the test split is in run.json (``active`` -> ``oracles``)."""

    name = "ensemble-oracle"
    version = "1"
    labels_generated = True
    option_help = {
        "members": "classifiers in the ensemble",
        "epochs": "training epochs of each member (default: the classifier's)",
    }

    def __init__(self, members: int = 3, epochs: int | None = None):
        if members < 1:
            raise UserError(f"ensemble-oracle: members must be >= 1, got {members}")
        if epochs is not None and epochs < 1:
            raise UserError(f"ensemble-oracle: epochs must be >= 1, got {epochs}")
        self.members, self.epochs = members, epochs
        self._models: list = []

    def prepare(self, ctx):
        # seeds far from the run's, so no member is the classifier being taught
        seeds = [10_000 + 1_000 * ctx.seed + i for i in range(self.members)]
        if self.epochs is None:
            self._models = [ctx.train_classifier(seed) for seed in seeds]
        else:
            self._models = [ctx.train_classifier(seed, options={"epochs": self.epochs}) for seed in seeds]

    def label(self, ctx, images, source_labels):
        import torch

        if not self._models:
            self.prepare(ctx)
        with torch.no_grad():
            probs = sum(
                torch.cat(
                    [
                        model(images[s : s + ctx.batch_size].to(ctx.device)).softmax(dim=1).cpu()
                        for s in range(0, len(images), ctx.batch_size)
                    ]
                )
                for model in self._models
            )
        return probs.argmax(dim=1)


@hookimpl
def register_oracles():
    return [PoolLabel, SourceLabel, EnsembleOracle]
