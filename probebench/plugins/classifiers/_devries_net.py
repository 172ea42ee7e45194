"""The torch side of the ``cnn-devries`` classifier (imported only when built or trained)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from probebench.plugins.classifiers._cnn_net import CNNNet

HIDDEN = 5  # fc_layer[:HIDDEN] ends with fc_layer.4, the 256-d ReLU the confidence branch reads


class DeVriesNet(CNNNet):
    """``CNNNet`` plus a confidence branch: Linear(256 -> 1) named ``confidence``
    on ``fc_layer.4``. ``forward`` returns the class logits (as every
    classifier does) and computes the branch too, so a forward hook at
    ``confidence`` (``batch.features("confidence")``) reads its logit."""

    def __init__(self, num_classes: int, shape: tuple[int, int, int], dropout: float = 0.3, width: int = 32):
        super().__init__(num_classes, shape, dropout, width)
        self.confidence = nn.Linear(256, 1)

    def logits_and_confidence(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits [N, K], confidence logit [N])."""
        hidden = self.fc_layer[:HIDDEN](self.conv_layer(x).flatten(1))
        return self.fc_layer[HIDDEN:](hidden), self.confidence(hidden).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_and_confidence(x)[0]


def devries_loss(
    logits: torch.Tensor, confidence_logit: torch.Tensor, labels: torch.Tensor, hints: torch.Tensor, lmbda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, confidence loss) of DeVries & Taylor (2018): with
    c = sigmoid(confidence logit), the prediction p is interpolated toward the
    one-hot label, p' = c p + (1 - c) y, where ``hints`` (bool [N]) holds (the
    other samples keep c = 1); loss = NLL(p') + lmbda * mean(-log c)."""
    confidence = torch.sigmoid(confidence_logit).clamp(1e-12, 1 - 1e-12)
    used = torch.where(hints, confidence, torch.ones_like(confidence)).unsqueeze(1)
    onehot = nn.functional.one_hot(labels, logits.shape[1]).to(logits.dtype)
    interpolated = used * logits.softmax(dim=1) + (1 - used) * onehot
    nll = nn.functional.nll_loss(interpolated.clamp_min(1e-12).log(), labels)
    confidence_loss = -confidence.log().mean()
    return nll + lmbda * confidence_loss, confidence_loss


def fit(
    model: DeVriesNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: dict,
    seed: int,
    device: torch.device | str,
    advance: Callable[[], None],
) -> dict[str, list[float]]:
    """Train with Adam on the DeVries loss, adapting lmbda toward the ``budget``
    of the confidence loss as the paper does (lmbda / 1.01 below it, / 0.99
    above); deterministic given ``seed``. Returns per-epoch mean losses."""
    generator = torch.Generator().manual_seed(seed)
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    lmbda = recipe["lmbda"]
    history: dict[str, list[float]] = {"loss": [], "confidence_loss": [], "lmbda": []}
    for _ in range(recipe["epochs"]):
        order = torch.randperm(len(images), generator=generator)
        totals, confidences = [], []
        for start in range(0, len(order), recipe["batch_size"]):
            idx = order[start : start + recipe["batch_size"]]
            x, y = images[idx].to(device), labels[idx].to(device)
            hints = (torch.rand(len(idx), generator=generator) < recipe["hint_rate"]).to(device)
            logits, confidence_logit = model.logits_and_confidence(x)
            loss, confidence_loss = devries_loss(logits, confidence_logit, y, hints, lmbda)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            lmbda = lmbda / 1.01 if confidence_loss.item() < recipe["budget"] else lmbda / 0.99
            totals.append(loss.item())
            confidences.append(confidence_loss.item())
            advance()
        history["loss"].append(sum(totals) / len(totals))
        history["confidence_loss"].append(sum(confidences) / len(confidences))
        history["lmbda"].append(lmbda)
    model.eval()
    return history
