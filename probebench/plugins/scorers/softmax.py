"""Scores computed from the softmax of the logits: no extra forward pass."""

from __future__ import annotations

from probebench.hookspecs import hookimpl


class MSP:
    """Maximum softmax probability, max_c softmax(z)_c (Hendrycks & Gimpel, 2017).

    Higher = more confident. The baseline every miss detector must beat.
    """

    name = "msp"

    def score(self, ctx, batch):
        return batch.probs.max(dim=1).values


class Entropy:
    """Negative predictive entropy, sum_c p_c log p_c (higher = more confident)."""

    name = "entropy"

    def score(self, ctx, batch):
        probs = batch.probs
        return (probs * probs.clamp_min(1e-12).log()).sum(dim=1)


@hookimpl
def register_scorers():
    return [MSP, Entropy]
