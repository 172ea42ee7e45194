"""``cnn-devries``: the ``cnn`` with DeVries & Taylor's learned confidence
branch, trained with its own loss (a ``SelfTraining`` classifier); the
``devries`` scorer reads the branch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probebench.errors import UserError
from probebench.hookspecs import hookimpl
from probebench.plugins.classifiers.cnn import CNN

BRANCH = "confidence"  # the module name of the confidence branch


class CNNDeVries(CNN):
    """The ``cnn`` with a confidence branch (DeVries & Taylor, "Learning
    Confidence for Out-of-Distribution Detection in Neural Networks", 2018):
    Linear(256 -> 1) named ``confidence`` on ``fc_layer.4``, c = sigmoid of
    it. It trains itself (``probebench.kinds.SelfTraining``): the softmax is
    interpolated toward the one-hot label by c on a random ``hint_rate`` of
    each batch, p' = c p + (1 - c) y, and the loss is NLL(p') + lmbda ·
    mean(-log c), lmbda adapted each step so that mean(-log c) stays near
    ``budget`` (the paper's 0.3). Adam at a constant ``lr`` (no one-cycle
    schedule, unlike ``cnn``). Score its confidence with the ``devries`` scorer.
    """

    name = "cnn-devries"
    version = "1"
    reference = "DeVries & Taylor, Learning Confidence for Out-of-Distribution Detection in Neural Networks, 2018"
    trains_itself = True
    option_help = {
        **CNN.option_help,
        "lr": "Adam learning rate (constant)",
        "lmbda": "initial weight of the confidence loss -log c (adapted toward budget)",
        "budget": "target of the mean confidence loss -log c",
        "hint_rate": "fraction of each batch whose prediction is interpolated toward the label",
    }
    option_ranges = {**CNN.option_ranges, "lmbda": "(0, inf)", "budget": "(0, inf)", "hint_rate": "[0, 1]"}

    def __init__(
        self,
        epochs: int = 8,
        lr: float = 1e-3,
        batch_size: int = 128,
        weight_decay: float = 0.0,
        dropout: float = 0.3,
        width: int = 32,
        lmbda: float = 0.1,
        budget: float = 0.3,
        hint_rate: float = 0.5,
    ):
        super().__init__(epochs, lr, batch_size, weight_decay, dropout, width)
        if lmbda <= 0 or budget <= 0 or not 0 <= hint_rate <= 1:
            raise UserError(f"{self.name}: lmbda and budget must be > 0 and hint_rate in [0, 1]")
        self.lmbda, self.budget, self.hint_rate = lmbda, budget, hint_rate

    def build(self, num_classes: int, shape: tuple[int, int, int]):
        from probebench.plugins.classifiers._devries_net import DeVriesNet

        return DeVriesNet(num_classes, shape, self.dropout, self.width)

    def fit(self, model, images, labels, seed: int, device, label: str) -> dict[str, list[float]]:
        import math

        from probebench.console import task
        from probebench.plugins.classifiers._devries_net import fit

        recipe = {k: getattr(self, k) for k in ("epochs", "lr", "batch_size", "weight_decay", "lmbda", "budget")}
        recipe["hint_rate"] = self.hint_rate
        with task(f"train {label}", self.epochs * math.ceil(len(images) / self.batch_size)) as advance:
            return fit(model, images, labels, recipe, seed, device, advance)

    def save_figures(
        self, model: Any, history: dict[str, list[float]], images: Any, labels: Any, out: Path, stem: str
    ) -> None:
        """``<stem>-losses.png``: the per-epoch losses and lmbda."""
        from probebench.report.plots import save_loss_curves

        save_loss_curves(history, out / f"{stem}-losses.png", "cnn-devries training")


class DeVriesScorer:
    """DeVries & Taylor's learned confidence: c = sigmoid of the classifier's
    ``confidence`` branch (a ``cnn-devries`` classifier, or any classifier with
    a module of that name giving one logit per image). Higher = more confident."""

    name = "devries"
    version = "1"
    reference = CNNDeVries.reference

    def prepare(self, ctx) -> None:
        from probebench.pipeline.features import resolve_layer

        try:
            resolve_layer(ctx.classifier, BRANCH)
        except UserError:
            raise UserError(
                f"scorer {self.name!r} reads the classifier's {BRANCH!r} branch; use classifier 'cnn-devries'"
            ) from None

    def score(self, ctx, batch):
        import torch

        return torch.sigmoid(batch.features(BRANCH).flatten())


@hookimpl
def register_classifiers():
    return [CNNDeVries]


@hookimpl
def register_scorers():
    return [DeVriesScorer]
