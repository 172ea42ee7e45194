"""``mc-dropout``: Monte-Carlo dropout (Gal & Ghahramani, ICML 2016)."""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl

VARIANTS = {
    "pe": "minus the predictive entropy H(mean_t p_t) (total uncertainty)",
    "ee": "minus the expected entropy mean_t H(p_t) (aleatoric part)",
    "mi": "minus the mutual information H(mean_t p_t) - mean_t H(p_t) (epistemic part)",
    "msp": "the largest probability of the mean distribution mean_t p_t",
}


class MCDropout:
    """Monte-Carlo dropout: T stochastic forward passes with only the dropout
    layers in train mode (Gal & Ghahramani, "Dropout as a Bayesian
    approximation", ICML 2016); p_t is the softmax of pass t.

    Variants (``mc-dropout:<variant>``, default ``pe``), each oriented so that
    higher = more confident:

    - ``pe``: -H(mean_t p_t), predictive entropy (total uncertainty);
    - ``ee``: -mean_t H(p_t), expected entropy (aleatoric part);
    - ``mi``: -(H(mean_t p_t) - mean_t H(p_t)), mutual information (epistemic part);
    - ``msp``: max_c mean_t p_t[c].

    Cost: the network before the first dropout layer is deterministic, so it
    runs once and only the stochastic tail runs T times, batched (each chunk of
    trunk outputs is repeated T times along the batch axis). The cut is found
    with ``torch.fx`` from the module graph and checked to reproduce the
    model's logits; for the built-in ``cnn`` it falls before ``fc_layer.2``.
    Where the model cannot be traced, or a skip connection crosses the first
    dropout layer, it falls back to T full passes (still batched). Only
    ``nn.Dropout``-family modules count as dropout (not ``F.dropout`` calls).
    A classifier without dropout is a user error. Variants of one suite share
    the samples; they are deterministic given the run seed. Note: the hit/miss
    outcome is the deterministic (eval-mode) prediction's.
    """

    name = "mc-dropout"
    version = "1"
    option_help = {
        "variant": "pe (default), ee, mi or msp; also given as mc-dropout:<variant>",
        "T": "number of stochastic passes",
    }

    def __init__(self, variant: str = "pe", T: int = 20):

        if variant not in VARIANTS:
            raise UserError(
                f"mc-dropout: unknown variant {variant!r}; use one of {', '.join(VARIANTS)} (e.g. mc-dropout:mi)"
            )
        if T < 2:
            raise UserError(f"mc-dropout: T must be at least 2 passes, got {T}")
        self.variant, self.T = variant, T
        self._model = None

    def prepare(self, ctx):
        from probebench.plugins.scorers._graph import probe_images
        from probebench.plugins.scorers._mc_dropout import plan

        self._split = plan(ctx.classifier, probe_images(ctx))
        self._model = ctx.classifier

    def score(self, ctx, batch):
        from probebench.plugins.scorers._mc_dropout import batch_samples
        from probebench.plugins.scorers._uncertainty import sample_confidences

        if self._model is not ctx.classifier:
            self.prepare(ctx)
        return sample_confidences(batch_samples(ctx, batch, self._split, self.T))[self.variant]


@hookimpl
def register_scorers():
    return [MCDropout]
