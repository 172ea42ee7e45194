"""Probers that learn P(hit) from a classifier's hidden features: ``mlp`` (the
reference prober of "Probing Network Decisions", ICPRAI 2024) and ``linear``
(a logistic probe baseline)."""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


class MLP:
    """MLP prober (Probing Network Decisions): standardise the features with the
    training statistics (``standardize``), Linear+ReLU 256 -> 128 -> 64, Linear
    to (miss, hit).

    Cross-entropy with label smoothing 0.2 (targets 0.9 / 0.1, so P(hit) rarely
    exceeds ~0.9), Adam lr 1e-3, batch 128, a stratified 0.8 / 0.2 fit /
    validation split, and the epoch with the best validation AUROC kept (early
    stopping). Class imbalance (misses are rare) is handled as ``imbalance``
    says: ``weighted`` (default) weighs the loss n / (2 n_c) per class,
    ``sampler`` draws class-balanced batches, ``fixed`` weighs each sample's
    loss miss:hit as ``miss_weight``:1, ``none`` does nothing. ``loss_weight``
    instead passes [w_miss, w_hit] to torch's ``CrossEntropyLoss(weight=...)``
    as the reference code does: that also weighs the smoothing term, so with
    [4, 1] and smoothing 0.2 the optimum for a hit is P(hit) = 0.9 / 1.3 = 0.69,
    not 0.9. The reference recipe is ``loss_weight = [4, 1]``,
    ``standardize = false``, ``epochs = 2``, ``patience = 0``.
    Deterministic given torch's global seed at ``fit``. After ``fit``,
    ``facts`` holds the training data's hit/miss counts and the validation
    accuracy, F1, AUROC and P(hit) range.
    """

    name = "mlp"
    version = "1"
    option_help = {
        "hidden": "sizes of the hidden Linear+ReLU layers",
        "epochs": "maximum training epochs",
        "lr": "Adam learning rate",
        "batch_size": "training batch size",
        "label_smoothing": "cross-entropy label smoothing (0.2 puts targets at 0.9/0.1)",
        "train_ratio": "fraction of the data to fit on; the rest validates (early stopping, facts)",
        "imbalance": "weighted (loss n/(2 n_c)), sampler (balanced batches), fixed (miss_weight:1) or none",
        "miss_weight": "miss:hit loss weight with imbalance='fixed'",
        "patience": "stop after this many epochs without a better validation AUROC (0 = never)",
        "weight_decay": "Adam weight decay",
        "loss_weight": "[miss, hit] weights passed to torch's CrossEntropyLoss(weight=...), the reference's [4, 1]; "
        "they weigh the smoothing term too (optimum P(hit) = 0.9/(0.9 + 0.1 w_miss/w_hit), 0.69 for [4, 1]); "
        "replaces imbalance",
        "standardize": "standardise the features with the training mean/std (the reference computes them but "
        "never applies them: false)",
    }
    option_ranges = {
        **{"epochs": "[1, inf)", "lr": "(0, inf)", "batch_size": "[1, inf)", "weight_decay": "[0, inf)"},
        "label_smoothing": "[0, 1)",
        "train_ratio": "(0, 1]",
        "miss_weight": "(0, inf)",
        "patience": "[0, inf)",
    }

    def __init__(
        self,
        hidden: list = (256, 128, 64),
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 128,
        label_smoothing: float = 0.2,
        train_ratio: float = 0.8,
        imbalance: str = "weighted",
        miss_weight: float = 4.0,
        patience: int = 5,
        weight_decay: float = 0.0,
        loss_weight: list | None = None,
        standardize: bool = True,
    ):

        imbalances = ("weighted", "sampler", "fixed", "none")
        if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
            raise UserError(f"prober {self.name!r}: hidden must be a list of positive integers, got {hidden!r}")
        if epochs < 1 or batch_size < 1 or patience < 0:
            raise UserError(f"prober {self.name!r}: epochs and batch_size must be >= 1 and patience >= 0")
        if lr <= 0 or weight_decay < 0 or miss_weight <= 0:
            raise UserError(f"prober {self.name!r}: lr and miss_weight must be > 0, weight_decay >= 0")
        if not 0 <= label_smoothing < 1:
            raise UserError(f"prober {self.name!r}: label_smoothing must lie in [0, 1), got {label_smoothing}")
        if not 0 < train_ratio < 1:
            raise UserError(f"prober {self.name!r}: train_ratio must lie in (0, 1), got {train_ratio}")
        if imbalance not in imbalances:
            raise UserError(
                f"prober {self.name!r}: imbalance must be one of {', '.join(imbalances)}, got {imbalance!r}"
            )
        if loss_weight is not None and not (
            isinstance(loss_weight, (list, tuple))
            and len(loss_weight) == 2
            and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in loss_weight)
        ):
            raise UserError(
                f"prober {self.name!r}: loss_weight must be two positive numbers [miss, hit], e.g. [4, 1]; "
                f"got {loss_weight!r}"
            )
        if loss_weight is not None and imbalance not in ("weighted", "none"):
            raise UserError(
                f"prober {self.name!r}: loss_weight replaces imbalance; drop imbalance={imbalance!r} or loss_weight"
            )
        self.loss_weight = None if loss_weight is None else [float(w) for w in loss_weight]
        self.standardize = bool(standardize)
        self.hidden = [int(h) for h in hidden]
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.label_smoothing, self.train_ratio = label_smoothing, train_ratio
        self.imbalance, self.miss_weight = imbalance, miss_weight
        self.patience, self.weight_decay = patience, weight_decay
        self.net = None
        self.facts: dict = {}

    def fit(self, features, hit) -> None:
        from dataclasses import fields

        import torch

        from probebench.plugins.probers._mlp_net import ProbeNet, TrainConfig, train

        features = torch.as_tensor(features).float()
        hit = torch.as_tensor(hit).bool()
        if features.dim() != 2 or len(features) != len(hit):
            raise ValueError(
                f"prober {self.name!r}: features [N, D] and hit [N] needed, got "
                f"{list(features.shape)} and {list(hit.shape)}"
            )
        if hit.all() or not hit.any():
            raise ValueError(
                f"prober {self.name!r}: training data has only {'hits' if hit.any() else 'misses'}; "
                "it needs both hits and misses"
            )
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
        self.net = ProbeNet(features.shape[1], self.hidden)
        config = TrainConfig(**{option.name: getattr(self, option.name) for option in fields(TrainConfig)})
        self.facts = train(self.net, features, hit, config, generator)

    def predict(self, features):
        """P(hit) [N] in [0, 1]; differentiable when called with gradients on
        (``self.net`` maps raw features to (miss, hit) logits)."""
        import torch

        if self.net is None:
            raise RuntimeError(f"prober {self.name!r}: predict before fit")
        features = torch.as_tensor(features).float()
        if torch.is_grad_enabled() and features.requires_grad:
            return self.net.eval().p_hit(features)
        with torch.no_grad():
            return self.net.eval().p_hit(features)

    # -- caching: plain tensors and values only ---------------------------
    def state_dict(self) -> dict:
        return {
            "in_dim": int(self.net.mean.numel()),
            "hidden": list(self.hidden),
            "weights": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
            "facts": self.facts,
        }

    def load_state_dict(self, state: dict) -> None:
        from probebench.plugins.probers._mlp_net import ProbeNet

        self.net = ProbeNet(int(state["in_dim"]), list(state["hidden"]))
        self.net.load_state_dict(state["weights"])
        self.net.eval()
        self.facts = dict(state.get("facts", {}))


class Linear(MLP):
    """Logistic probe: standardised features, one Linear layer to (miss, hit).

    The baseline that shows how much the MLP's hidden layers add. Same
    training as ``mlp`` (imbalance handling, early stopping on validation
    AUROC, facts) but by default no label smoothing and lr 1e-2 (a single
    layer learns slowly at 1e-3).
    """

    name = "linear"
    version = "1"
    option_help = {k: v for k, v in MLP.option_help.items() if k != "hidden"}

    def __init__(
        self,
        epochs: int = 30,
        lr: float = 1e-2,
        batch_size: int = 128,
        label_smoothing: float = 0.0,
        train_ratio: float = 0.8,
        imbalance: str = "weighted",
        miss_weight: float = 4.0,
        patience: int = 5,
        weight_decay: float = 0.0,
        loss_weight: list | None = None,
        standardize: bool = True,
    ):
        super().__init__(
            [],
            epochs,
            lr,
            batch_size,
            label_smoothing,
            train_ratio,
            imbalance,
            miss_weight,
            patience,
            weight_decay,
            loss_weight,
            standardize,
        )


@hookimpl
def register_probers():
    return [MLP, Linear]
