"""``confidnet``: a prober that regresses the true-class probability (ConfidNet,
Corbière et al., NeurIPS 2019), the closest published peer of the ``mlp`` prober."""

from __future__ import annotations

from probebench.hookspecs import hookimpl
from probebench.plugins.probers.mlp import MLP


class ConfidNet(MLP):
    """ConfidNet (Corbière et al., "Addressing Failure Prediction by Learning
    Model Confidence", NeurIPS 2019): an auxiliary MLP on the classifier's
    hidden features trained to regress the **true-class probability** (TCP,
    the softmax probability the classifier gives the true class) with a mean
    squared error, unweighted. Its output is the confidence: predicted TCP in
    [0, 1].

    It declares ``probebench.kinds.TrueClassTarget``, so the ``prober`` scorer
    hands it the TCP of the same outcomes it hands ``mlp`` (the classifier's own
    for ``source = "train"``, the fold models' for ``crossfit``), on the same
    features: the two differ only in their target and loss. As in the paper,
    four hidden Linear+ReLU layers of 400 units and one output (here the
    (miss, hit) softmax of ``mlp``'s net, whose hit probability is a sigmoid of
    a linear function: the same function class as the paper's sigmoid unit).
    Adam lr 1e-4, as the paper and its official code (valeoai/ConfidNet,
    ``selfconfid-classif.yaml``) train it.

    Its confidence is the **log-odds** of the predicted TCP (``log_odds``, the
    value before the sigmoid), which the ``prober`` scorer ranks by: most TCP
    targets are ~1 (exactly 1.0 in float32 for a confident classifier), so the
    regression drives the sigmoid into saturation, where P(hit) rounds to
    exactly 1.0 for many samples and would tie them (version 1, lr 1e-3,
    scored on P(hit): every score 1.0, AUROC 0.5, on every seed with
    ``source = "train"``). The pre-sigmoid value keeps their order. As a
    log-odds it is not a probability, so ECE/MCE are n/a for it; ``predict``
    still gives P(hit) for correctors. Early stopping ranks validation AUROC
    on the log-odds too.

    Deviations: the classifier stays frozen (the paper's optional second
    phase fine-tunes the encoder; a prober may not change the classifier it
    judges), features are standardised, early stopping on validation AUROC
    of hit/miss (the paper selects on validation AUPR-error), 30 epochs at
    most (the paper's configuration allows 500).
    """

    name = "confidnet"
    version = "2"
    reference = "Corbière et al., Addressing Failure Prediction by Learning Model Confidence, NeurIPS 2019"
    fits_true_class_probability = True
    option_help = {
        k: v
        for k, v in MLP.option_help.items()
        if k not in ("label_smoothing", "imbalance", "miss_weight", "loss_weight")
    }
    option_ranges = {k: v for k, v in MLP.option_ranges.items() if k not in ("label_smoothing", "miss_weight")}

    def __init__(
        self,
        hidden: list = (400, 400, 400, 400),
        epochs: int = 30,
        lr: float = 1e-4,
        batch_size: int = 128,
        train_ratio: float = 0.8,
        patience: int = 5,
        weight_decay: float = 0.0,
        standardize: bool = True,
    ):
        super().__init__(
            hidden,
            epochs,
            lr,
            batch_size,
            label_smoothing=0.0,
            train_ratio=train_ratio,
            imbalance="none",
            patience=patience,
            weight_decay=weight_decay,
            standardize=standardize,
        )

    def fit(self, features, hit, tcp=None) -> None:
        """Regress ``tcp`` [N] in [0, 1] (the true-class probability) from
        ``features`` [N, D]; ``hit`` [N] splits and early-stops the training."""
        if tcp is None:
            raise ValueError(f"prober {self.name!r} regresses the true-class probability: call fit(features, hit, tcp)")
        self._fit_net(features, hit, tcp)

    def log_odds(self, features):
        """The log-odds of the predicted TCP [N] (the pre-sigmoid value of
        ``predict``): the confidence the ``prober`` scorer ranks by."""
        import torch

        if self.net is None:
            raise RuntimeError(f"prober {self.name!r}: log_odds before fit")
        with torch.no_grad():
            return self.net.eval().log_odds(torch.as_tensor(features).float())


@hookimpl
def register_probers():
    return [ConfidNet]
