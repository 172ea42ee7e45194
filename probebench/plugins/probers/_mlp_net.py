"""The torch side of the ``mlp`` and ``linear`` probers (imported only when fitting).

Class index 0 is *miss*, 1 is *hit*: P(hit) = softmax(net(features))[:, 1].
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

IMBALANCE = ("weighted", "sampler", "fixed", "none")


class ProbeNet(nn.Module):
    """Standardise the features with stored training statistics, then Linear+ReLU
    per hidden size and a final Linear to 2 logits (miss, hit)."""

    def __init__(self, in_dim: int, hidden: list[int]):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 2))
        self.body = nn.Sequential(*layers)

    def standardise_with(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(dim=0))
        # Dead ReLU units have std 0: leave them at 0 after centring instead of dividing by 0.
        self.std.copy_(features.std(dim=0, unbiased=False).clamp_min(1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body((features - self.mean) / self.std)

    def p_hit(self, features: torch.Tensor) -> torch.Tensor:
        return self(features).softmax(dim=1)[:, 1]

    def log_odds(self, features: torch.Tensor) -> torch.Tensor:
        """log P(hit) / P(miss): the pre-sigmoid value of ``p_hit``, which keeps
        its order where ``p_hit`` rounds to exactly 1.0 (float32 does beyond ~17)."""
        logits = self(features)
        return logits[:, 1] - logits[:, 0]


def class_weights(hit: torch.Tensor, imbalance: str, miss_weight: float = 4.0) -> torch.Tensor:
    """Cross-entropy weights [w_miss, w_hit] for ``imbalance``:

    - ``weighted``: n / (2 n_c), so each class carries half the loss (scikit-learn's "balanced");
    - ``fixed``: ``miss_weight`` : 1, the reference code's 4 : 1;
    - ``sampler`` and ``none``: 1 : 1 (the sampler balances the batches instead).
    """
    if imbalance == "weighted":
        n = len(hit)
        n_hit = int(hit.sum())
        n_miss = n - n_hit
        return torch.tensor([n / (2 * max(n_miss, 1)), n / (2 * max(n_hit, 1))])
    if imbalance == "fixed":
        return torch.tensor([float(miss_weight), 1.0])
    return torch.ones(2)


def sample_weights(hit: torch.Tensor) -> torch.Tensor:
    """Per-sample draw weights of the balanced sampler: 1 / (its class's count)."""
    n_hit = int(hit.sum())
    n_miss = len(hit) - n_hit
    return torch.where(hit, 1.0 / max(n_hit, 1), 1.0 / max(n_miss, 1))


def stratified_split(hit: torch.Tensor, train_ratio: float, generator: torch.Generator):
    """(fit indices, validation indices): ``train_ratio`` of each class to fit,
    at least one sample of each class on both sides when the class has two."""
    fit_parts, valid_parts = [], []
    for cls in (False, True):
        members = torch.nonzero(hit == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_fit = int(round(len(members) * train_ratio))
        if len(members) >= 2:
            n_fit = min(max(n_fit, 1), len(members) - 1)
        fit_parts.append(members[:n_fit])
        valid_parts.append(members[n_fit:])
    return torch.cat(fit_parts).sort().values, torch.cat(valid_parts).sort().values


def _auroc(p_hit: np.ndarray, hit: np.ndarray) -> float:
    """AUROC of finding hits by ``p_hit``, computed as scikit-learn's
    ``roc_auc_score`` computes it, step for step (the same float, tested):
    the ROC curve's corners (one per distinct score, collinear ones dropped),
    then the trapezoids under it. Early stopping compares epochs by this
    number, so a sum in another order (ranks, as the ``auroc`` metric does)
    could pick another epoch on a tie; importing scikit-learn for it took
    1.5 s of a cold run."""
    if hit.all() or not hit.any():
        return float("nan")
    order = np.argsort(p_hit, kind="mergesort")[::-1]
    score, positive = p_hit[order], hit[order]
    ends = np.r_[np.where(np.diff(score))[0], positive.size - 1]
    tps = np.cumsum(positive, dtype=np.float64)[ends]
    fps = 1 + ends - tps
    if len(fps) > 2:
        corners = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps = fps[corners], tps[corners]
    fpr, tpr = np.r_[0, fps] / fps[-1], np.r_[0, tps] / tps[-1]
    return float((np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0).sum())  # numpy's trapezoid rule


def _f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """F1 of ``predicted`` against ``truth`` (booleans); 0 when both are all False."""
    denominator = int(truth.sum()) + int(predicted.sum())
    return 2 * int((truth & predicted).sum()) / denominator if denominator else 0.0


def _quantiles(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    q = np.quantile(values, [0.0, 0.05, 0.5, 0.95, 1.0])
    return {k: round(float(v), 6) for k, v in zip(("min", "p05", "p50", "p95", "max"), q)}


def evaluate(net: ProbeNet, features: torch.Tensor, hit: torch.Tensor, by_log_odds: bool = False) -> dict:
    """Validation facts: accuracy at P(hit) 0.5, F1 of hit and of miss, AUROC
    (hit positive on P(hit), or on its log-odds with ``by_log_odds``: the same
    number unless P(hit) saturates; equal to miss AUROC on the negated score),
    and the range of P(hit) on validation hits and misses."""
    with torch.no_grad():
        p = net.eval().p_hit(features).numpy()
        ranked = net.log_odds(features).numpy() if by_log_odds else p
    y = hit.numpy().astype(bool)
    pred = p >= 0.5
    return {
        "valid_accuracy": round(float((pred == y).mean()), 6),
        "valid_f1": round(_f1(y, pred), 6),
        "valid_f1_miss": round(_f1(~y, ~pred), 6),
        "valid_auroc": round(_auroc(ranked, y), 6),
        "p_hit_valid_hits": _quantiles(p[y]),
        "p_hit_valid_misses": _quantiles(p[~y]),
    }


@contextmanager
def one_thread():
    """Run small-matrix work on one thread: thread hand-offs cost more than the
    arithmetic (measured on a 2-core machine: a 2-thread prober fit took 4.1 s
    against 2.2 s on one thread for 30 epochs of 4,000 x 262, and far longer
    when other processes competed for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class TrainConfig:
    """How ``train`` fits a ``ProbeNet``: the ``mlp`` prober's training options."""

    epochs: int
    lr: float
    batch_size: int
    label_smoothing: float
    train_ratio: float
    imbalance: str
    miss_weight: float
    patience: int
    weight_decay: float
    loss_weight: list[float] | None = None
    standardize: bool = True


def train(
    net: ProbeNet,
    features: torch.Tensor,
    hit: torch.Tensor,
    config: TrainConfig,
    generator,
    tcp: torch.Tensor | None = None,
) -> dict:
    """Fit ``net`` on a stratified ``train_ratio`` split, keep the epoch with the
    best validation AUROC, ties broken by the lower validation loss (stop after
    ``patience`` epochs without improvement; 0 = run all epochs), and return
    the training facts. Every random draw comes from ``generator``.

    With ``tcp`` (the true-class probability [N] of each sample) the loss is
    ConfidNet's: the mean squared error between P(hit) and the TCP, unweighted
    (the class options are then unused); the split and early stopping still
    use ``hit``, and the validation AUROC ranks the log-odds of P(hit): a
    regression toward TCPs of ~1 saturates the sigmoid, and an AUROC of
    float32 P(hit) would then see ties that the net's outputs do not have."""
    with one_thread():
        return _train(net, features, hit, config, generator, tcp)


def tcp_loss(logits: torch.Tensor, tcp: torch.Tensor) -> torch.Tensor:
    """ConfidNet's regression loss: MSE between P(hit) = softmax(logits)[:, 1] and the TCP."""
    return nn.functional.mse_loss(logits.softmax(dim=1)[:, 1], tcp)


def weighted_loss(weights: torch.Tensor, label_smoothing: float):
    """Cross-entropy with each sample's loss weighted by its class's weight.

    (torch's ``weight=`` would also weigh the smoothing term of the other class
    and move the optimum off 0.9 / 0.1: with n/(2 n_c) weights, hits would
    settle near P(hit) = 0.5.)"""

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_sample = nn.functional.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)
        w = weights[target]
        return (w * per_sample).sum() / w.sum()

    return loss_fn


def torch_weighted_loss(weights: torch.Tensor, label_smoothing: float):
    """torch's ``CrossEntropyLoss(weight=weights, label_smoothing=...)``, as the
    reference prober trains: the class weights multiply every class's term of
    the smoothed target, so the optimum moves (hits at 0.9 / (0.9 + 0.1 w_miss / w_hit))."""
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)


def _epoch(net: ProbeNet, x, targets, loss_fn, optimiser, draw, batch_size: int, generator) -> None:
    """One pass over the fit split: shuffled, or drawn class-balanced when ``draw`` holds sample weights."""
    net.train()
    if draw is None:
        order = torch.randperm(len(x), generator=generator)
    else:
        order = torch.multinomial(draw, len(x), replacement=True, generator=generator)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        loss = loss_fn(net(x[idx]), targets[idx])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()


def _rank(net: ProbeNet, x_valid, y_valid, loss_fn, valid_targets, by_log_odds: bool) -> tuple[float, float]:
    """How good the current epoch is: (validation AUROC, -validation loss),
    compared in that order; a one-class validation split has no AUROC and is
    ranked by the loss alone. The AUROC ranks P(hit), or with ``by_log_odds``
    its log-odds."""
    with torch.no_grad():
        valid_logits = net.eval()(x_valid)
        ranked = valid_logits[:, 1] - valid_logits[:, 0] if by_log_odds else valid_logits.softmax(dim=1)[:, 1]
        auroc = _auroc(ranked.numpy(), y_valid.numpy().astype(bool))
        valid_loss = float(loss_fn(valid_logits, valid_targets))
    return (-1.0 if np.isnan(auroc) else auroc, -valid_loss)


def _train(net: ProbeNet, features: torch.Tensor, hit: torch.Tensor, config: TrainConfig, generator, tcp=None) -> dict:
    fit_idx, valid_idx = stratified_split(hit, config.train_ratio, generator)
    x_fit, y_fit = features[fit_idx], hit[fit_idx]
    x_valid, y_valid = features[valid_idx], hit[valid_idx]
    if config.standardize:
        net.standardise_with(x_fit)
    if tcp is not None:
        weights, loss_fn = torch.ones(2), tcp_loss
    elif config.loss_weight is not None:
        weights = torch.tensor(config.loss_weight, dtype=torch.float32)
        loss_fn = torch_weighted_loss(weights, config.label_smoothing)
    else:
        weights = class_weights(y_fit, config.imbalance, config.miss_weight)
        loss_fn = weighted_loss(weights, config.label_smoothing)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    draw = sample_weights(y_fit) if config.imbalance == "sampler" and tcp is None else None
    targets = y_fit.long() if tcp is None else tcp[fit_idx].float()
    valid_targets = y_valid.long() if tcp is None else tcp[valid_idx].float()

    best_rank, best_epoch, best_state, epochs_run = (-2.0, 0.0), 0, copy.deepcopy(net.state_dict()), 0
    for epoch in range(1, config.epochs + 1):
        _epoch(net, x_fit, targets, loss_fn, optimiser, draw, config.batch_size, generator)
        epochs_run = epoch
        rank = _rank(net, x_valid, y_valid, loss_fn, valid_targets, by_log_odds=tcp is not None)
        if rank > best_rank:
            best_rank, best_epoch, best_state = rank, epoch, copy.deepcopy(net.state_dict())
        elif config.patience and epoch - best_epoch >= config.patience:
            break
    net.load_state_dict(best_state)
    net.eval()
    facts = {
        "n_hit": int(hit.sum()),
        "n_miss": int((~hit).sum()),
        "n_fit": len(fit_idx),
        "n_valid": len(valid_idx),
        "n_valid_miss": int((~y_valid).sum()),
        "loss_weights": {"miss": round(float(weights[0]), 6), "hit": round(float(weights[1]), 6)},
        "imbalance": "torch-weight" if config.loss_weight is not None else config.imbalance,
        **({} if tcp is None else {"imbalance": "none", "loss": "mse-tcp"}),
        "standardized": config.standardize,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
    }
    facts.update(evaluate(net, x_valid, y_valid, by_log_odds=tcp is not None))
    return facts
