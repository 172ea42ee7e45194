"""Statistics of sampled predictive distributions (MC-dropout passes, ensemble
members), as confidences: higher = more confident. Imported inside methods."""

from __future__ import annotations

import torch


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) along the last axis; 0 log 0 = 0."""
    return -torch.special.xlogy(probs, probs).sum(dim=-1)


def sample_confidences(probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """From sampled probabilities [S, N, C] (S passes or members), the
    confidences [N] of each variant:

    - ``pe``: minus the predictive entropy H(mean_s p_s) (total uncertainty);
    - ``ee``: minus the expected entropy mean_s H(p_s) (aleatoric part);
    - ``mi``: minus the mutual information H(mean_s p_s) - mean_s H(p_s)
      (epistemic part, the disagreement between samples);
    - ``msp``: the largest class probability of the mean distribution.
    """
    mean = probs.mean(dim=0)
    predictive = entropy(mean)
    expected = entropy(probs).mean(dim=0)
    return {
        "pe": -predictive,
        "ee": -expected,
        "mi": -(predictive - expected),
        "msp": mean.max(dim=-1).values,
    }
