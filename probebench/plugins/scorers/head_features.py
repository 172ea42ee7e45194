"""Label-free scorers on the features the classifier's last linear layer (its
head, ``logits = W h + b``) reads, as OpenOOD and FD-Shifts run them: ReAct's
clipped energy and ViM's virtual-logit score. Higher = more confident.

Both need ``h``: the output of ``layer`` (default ``fc_layer.4``, the CNN's
256-d ReLU whose output the head reads; dropout is the identity at test
time). ``prepare`` fits on the training split's features (the cached
artifact the prober and the feature-distance scorers share) and checks that
``W h + b`` reproduces the classifier's own logits, so a ``layer`` that does
not feed the head is refused in one line rather than scored. Scoring is a few
matrix products on the batch's features.
"""

from __future__ import annotations

from typing import Any

from probebench.errors import UserError
from probebench.hookspecs import hookimpl
from probebench.plugins.scorers.feature_distance import train_outputs

LAYER_HELP = "the layer whose output the last Linear (the head) reads (`probebench layers` lists them)"


def head_weights(ctx: Any, layer: str) -> tuple[Any, Any, Any, Any]:
    """(W [C, D], b [C], training features [N, D], training logits [N, C]),
    float64, after checking that ``W h + b`` gives the classifier's logits."""
    import torch

    from probebench.plugins.scorers._gradients import last_linear

    name = last_linear(ctx.classifier, ctx.num_classes)
    head = ctx.classifier.get_submodule(name)
    logits, features = train_outputs(ctx, layer)
    if features.shape[1] != head.in_features:
        raise UserError(
            f"layer {layer!r} has {features.shape[1]} features but the head {name!r} reads {head.in_features}; "
            "choose the layer whose output the head reads"
        )
    weight = head.weight.detach().double().cpu()
    bias = head.bias.detach().double().cpu() if head.bias is not None else torch.zeros(len(weight), dtype=torch.float64)
    rebuilt = features[:256] @ weight.T + bias
    if not torch.allclose(rebuilt, logits[:256], rtol=1e-4, atol=1e-3):
        raise UserError(
            f"the head {name!r} applied to layer {layer!r} does not give the classifier's logits; "
            "choose the layer whose output the head reads"
        )
    return weight, bias, features, logits


def react_energy(features: Any, weight: Any, bias: Any, threshold: float) -> Any:
    """logsumexp of the logits of the features clipped at ``threshold``: ReAct's
    negative energy, [N]."""
    return (features.clamp(max=threshold) @ weight.T + bias).logsumexp(dim=1)


class ReAct:
    """ReAct (Sun, Guo & Li, NeurIPS 2021): clip the head's input features at the
    ``percentile``-th percentile of their training values, recompute the
    logits, and score the negative energy logsumexp_c z_c (T = 1). Clipping
    removes the few very large activations that make energy over-confident.
    Higher = more confident."""

    name = "react"
    version = "1"
    reference = "Sun, Guo & Li, ReAct: Out-of-distribution Detection With Rectified Activations, NeurIPS 2021"
    option_help = {"layer": LAYER_HELP, "percentile": "clip at this percentile of the training activations"}
    option_ranges = {"percentile": "(0, 100]"}

    def __init__(self, layer: str = "fc_layer.4", percentile: float = 90.0):
        if not 0 < percentile <= 100:
            raise UserError(f"react: percentile must lie in (0, 100], got {percentile}")
        self.layer, self.percentile = layer, float(percentile)

    def prepare(self, ctx):
        import numpy as np

        self.weight, self.bias, features, _ = head_weights(ctx, self.layer)
        self.threshold = float(np.percentile(features.numpy().ravel(), self.percentile))

    def score(self, ctx, batch):
        features = batch.features(self.layer).flatten(1).double()
        return react_energy(features, self.weight, self.bias, self.threshold)


def fit_vim(features: Any, logits: Any, weight: Any, bias: Any, dim: int) -> tuple[Any, Any, float]:
    """ViM's (origin u, basis of the residual space [D, D - dim], alpha) from
    training features: u = -pinv(W) b; the principal space is spanned by the
    ``dim`` leading eigenvectors of the second moment of (h - u); alpha =
    mean max logit / mean residual norm."""
    import torch

    origin = -torch.linalg.pinv(weight) @ bias
    centred = features - origin
    moment = centred.T @ centred / len(centred)
    _values, vectors = torch.linalg.eigh(moment)  # ascending eigenvalues
    residual_basis = vectors[:, : moment.shape[0] - dim]
    residual = (centred @ residual_basis).norm(dim=1)
    alpha = float(logits.max(dim=1).values.mean() / residual.mean())
    return origin, residual_basis, alpha


class ViM:
    """ViM, virtual-logit matching (Wang, Li, Feng & Zhang, CVPR 2022): the norm
    of the head's input features outside their ``dim``-dimensional principal
    subspace (centred at u = -pinv(W) b), scaled by alpha to match the logits,
    is a virtual logit of "unknown"; the score is logsumexp_c z_c minus that
    virtual logit. ``dim`` defaults to half the feature dimension (OpenOOD's
    256 of 512 for ResNet-18). Higher = more confident."""

    name = "vim"
    version = "1"
    reference = "Wang, Li, Feng & Zhang, ViM: Out-Of-Distribution with Virtual-logit Matching, CVPR 2022"
    option_help = {
        "layer": LAYER_HELP,
        "dim": "dimension of the principal subspace (0: half the feature dimension)",
    }
    option_ranges = {"dim": "[0, inf)"}

    def __init__(self, layer: str = "fc_layer.4", dim: int = 0):
        if dim < 0:
            raise UserError(f"vim: dim must be >= 0, got {dim}")
        self.layer, self.dim = layer, dim

    def prepare(self, ctx):
        self.weight, self.bias, features, logits = head_weights(ctx, self.layer)
        width = features.shape[1]
        dim = self.dim or width // 2
        if dim >= width:
            raise UserError(f"vim: dim = {dim} must be below the {width} features of layer {self.layer!r}")
        self.origin, self.residual_basis, self.alpha = fit_vim(features, logits, self.weight, self.bias, dim)

    def score(self, ctx, batch):
        features = batch.features(self.layer).flatten(1).double()
        logits = features @ self.weight.T + self.bias
        virtual = self.alpha * ((features - self.origin) @ self.residual_basis).norm(dim=1)
        return logits.logsumexp(dim=1) - virtual


@hookimpl
def register_scorers():
    return [ReAct, ViM]
