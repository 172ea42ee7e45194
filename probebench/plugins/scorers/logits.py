"""Scorers computed from the logits the batch already holds: no extra forward pass.

z are the logits, p = softmax(z); every score is higher = more confident.
"""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


def _positive_temperature(scorer: str, temperature: float) -> float:
    """``temperature`` as a float, or a UserError naming ``scorer`` unless it is > 0."""

    if not temperature > 0:
        raise UserError(f"{scorer}: temperature must be > 0, got {temperature}")
    return float(temperature)


class Margin:
    """Top-1 minus top-2 softmax probability, p_(1) - p_(2) (Scheffer et al.,
    2001; a strong baseline in GradTrust's ImageNet comparison). In [0, 1];
    higher = more confident."""

    name = "margin"
    version = "1"

    def score(self, ctx, batch):
        top2 = batch.probs.topk(2, dim=1).values
        return top2[:, 0] - top2[:, 1]


class MaxLogit:
    """The largest logit, max_c z_c (Hendrycks et al., "Scaling out-of-distribution
    detection for real-world settings", ICML 2022). Higher = more confident."""

    name = "max-logit"
    version = "1"

    def score(self, ctx, batch):
        return batch.logits.max(dim=1).values


class Energy:
    """Negative free energy, T * logsumexp_c(z_c / T) (Liu et al., "Energy-based
    out-of-distribution detection", NeurIPS 2020). The energy is -T logsumexp(z/T);
    low energy = in-distribution, so its negative is returned: higher = more
    confident."""

    name = "energy"
    version = "1"
    option_help = {"temperature": "T in T * logsumexp(z / T); must be > 0"}

    def __init__(self, temperature: float = 1.0):
        self.temperature = _positive_temperature("energy", temperature)

    def score(self, ctx, batch):
        t = self.temperature
        return t * (batch.logits / t).logsumexp(dim=1)


class Doctor:
    """DOCTOR's gini form (Granese et al., "DOCTOR: a simple method for detecting
    misclassification errors", NeurIPS 2021): g(x) = 1 - sum_c p_c^2 is high when
    the prediction is unsure, and DOCTOR's D_alpha rejects when
    g / (1 - g) exceeds a threshold. Returned as sum_c p_c^2 = 1 - g, which ranks
    samples exactly as -D_alpha: higher = more confident. ``temperature``
    divides the logits first (DOCTOR tunes it; 1 = none); its input
    perturbation is left out (it costs a backward and a second pass)."""

    name = "doctor"
    version = "1"
    option_help = {"temperature": "divides the logits before the softmax; must be > 0"}

    def __init__(self, temperature: float = 1.0):
        self.temperature = _positive_temperature("doctor", temperature)

    def score(self, ctx, batch):
        probs = batch.probs if self.temperature == 1.0 else (batch.logits / self.temperature).softmax(dim=1)
        return probs.pow(2).sum(dim=1)


@hookimpl
def register_scorers():
    return [Margin, MaxLogit, Energy, Doctor]
