"""Gradient-based scorers: ``grad-norm`` (gradient uncertainty with a confounding
label) and ``gradtrust`` (counterfactual gradients). Per-sample gradients come
from ``torch.func`` (see ``_gradients.py``)."""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


class _LayerGradients:
    """Shared plumbing: the gradient plan is built once per trained classifier."""

    layer: str | None = None
    _model = None

    def prepare(self, ctx):
        from probebench.plugins.scorers._gradients import plan
        from probebench.plugins.scorers._graph import probe_images

        self._plan = plan(ctx.classifier, self.layer, ctx.num_classes, probe_images(ctx))
        self._model = ctx.classifier

    def _hidden(self, ctx, batch):
        from probebench.plugins.scorers._gradients import hidden

        if self._model is not ctx.classifier:
            self.prepare(ctx)
        return hidden(ctx, batch, self._plan)


class GradNorm(_LayerGradients):
    """Gradient uncertainty with a confounding label (Lee & AlRegib, "Gradients
    as a measure of uncertainty in neural networks", ICIP 2020; Lee et al.,
    "Probing the purview of neural networks via gradient analysis", IEEE Access
    2023): back-propagate BCE(sigmoid(z), 1) -- an all-ones target, i.e. every
    class at once -- and take, per sample, the L2 norm of the gradient w.r.t.
    the last linear layer's weight and bias,
    ||(sigmoid(z) - 1) h^T||^2 + ||sigmoid(z) - 1||^2 under a square root.
    A large gradient = uncertain, so the score is minus the norm (higher = more
    confident). ``layer`` takes the gradient at another layer instead.

    Measured on mnist-5k with the cnn, this published orientation detects misses
    worse than chance (results/LEADERBOARD.md, suite mnist-quick, seeds 0-2,
    `grad-norm`: AUROC 0.220 ± 0.025): a confident softmax
    prediction has many strongly negative logits, each adding |sigmoid(z_c) - 1|
    ≈ 1 to the gradient. The sign is kept as published."""

    name = "grad-norm"
    version = "1"
    option_help = {"layer": "module whose weight (and bias) gradient is measured (default: the last Linear)"}

    def __init__(self, layer: str | None = None):
        self.layer = layer or None

    def score(self, ctx, batch):
        from probebench.plugins.scorers._gradients import grad_norm

        h = self._hidden(ctx, batch)
        return -grad_norm(self._plan, h)


VARIANTS = ("counterfactual", "demo")


class GradTrust(_LayerGradients):
    """GradTrust (Prabhushankar & AlRegib, "Counterfactual gradients-based
    quantification of prediction trust in neural networks", MIPR 2024): how much
    the weights would have to change for the network to predict another class.
    Two forms (``gradtrust:<variant>``), both higher = more confident:

    - ``counterfactual`` (default; the paper's definition): with G_c the
      per-sample gradient of cross-entropy(z, c) w.r.t. the layer's weight and
      Var the variance over its entries, score = log(mean_{q in Q} Var(G_q) /
      Var(G_yhat)), where yhat is the predicted class and Q the next ``k``
      classes by logit (default k = 3). The paper writes the ratio the other
      way up (Var(G_yhat) / mean Var(G_q)); that ratio grows with uncertainty
      (at the last layer it equals ||p - e_yhat||^2 / mean_q ||p - e_q||^2), so
      it is inverted here, as a log to keep its range finite.
    - ``demo`` (the public demo code): one gradient G of MSE(z, 1/C) w.r.t. the
      weight; v_r = var_j(G[r,j]^2) per output row r; score = max_r v_r /
      mean_r v_r, in [1, C]. At a final linear layer this equals
      max_c (z_c - 1/C)^4 / mean_c (z_c - 1/C)^4 exactly (a test holds the
      gradient path to it). On mnist-5k this orientation (higher = more
      trust) detects misses (results/LEADERBOARD.md, suite mnist-quick, seeds
      0-2, `gradtrust:demo`: AUROC 0.858 ± 0.025); the counterfactual form
      does as well as msp (`gradtrust:counterfactual`: AUROC 0.954 ± 0.004).

    ``layer`` takes the gradient at another (earlier) layer, e.g. ``fc_layer.3``
    of the cnn, where no closed form exists; gradients are per sample via
    torch.func vmap, only the part of the network from that layer on is
    differentiated, in float64. At the last linear layer the counterfactual
    form uses the closed form Var(G_c) = ||p - e_c||^2 ||h||^2 / (C D - 1)
    instead (equal to the torch.func path within 1e-8 relative, a test
    checks), which costs one forward pass.
    """

    name = "gradtrust"
    version = "2"  # 2: the counterfactual form from its closed form at the last layer
    option_help = {
        "variant": "counterfactual (default) or demo; also given as gradtrust:<variant>",
        "k": "number of counterfactual classes (the next k by logit)",
        "layer": "module whose weight gradient is used (default: the last Linear)",
    }

    def __init__(self, variant: str = "counterfactual", k: int = 3, layer: str | None = None):

        if variant not in VARIANTS:
            raise UserError(
                f"gradtrust: unknown variant {variant!r}; use one of {', '.join(VARIANTS)} (e.g. gradtrust:demo)"
            )
        if k < 1:
            raise UserError(f"gradtrust: k must be >= 1, got {k}")
        self.variant, self.k, self.layer = variant, k, layer or None

    def prepare(self, ctx):

        if self.variant == "counterfactual" and self.k >= ctx.num_classes:
            raise UserError(
                f"gradtrust: k = {self.k} needs more than {ctx.num_classes} classes; use k <= {ctx.num_classes - 1}"
            )
        super().prepare(ctx)

    def score(self, ctx, batch):
        from probebench.plugins.scorers._gradients import counterfactual_trust, demo_trust

        h = self._hidden(ctx, batch)
        if self.variant == "demo":
            return demo_trust(self._plan, h)
        return counterfactual_trust(self._plan, h, self.k)


@hookimpl
def register_scorers():
    return [GradNorm, GradTrust]
