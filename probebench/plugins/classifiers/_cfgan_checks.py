"""Checks of what a counterfactual generator's edits keep and point at (torch;
used by ``examples/cfgan_judge.py`` and ``examples/cfgan_deletion.py``)."""

from __future__ import annotations

import torch


def source_retrieval_rate(counterfactuals: torch.Tensor, sources: torch.Tensor) -> float:
    """The share of counterfactuals whose nearest source image (L2) is the
    one they were made from: ``counterfactuals[i]`` was made from
    ``sources[i]``. Chance is 1/N for N sources; a generator that draws a
    class template whatever the source scores near chance, one that edits
    its source near 1."""
    distances = torch.cdist(counterfactuals.flatten(1), sources.flatten(1))
    return float((distances.argmin(dim=1) == torch.arange(len(sources), device=sources.device)).float().mean())


def delete_top_pixels(images: torch.Tensor, saliency: torch.Tensor, k: int, fill: torch.Tensor) -> torch.Tensor:
    """``images`` with, per image, the ``k`` pixels of largest ``saliency``
    (summed over channels) replaced by ``fill``'s pixels (e.g. zeros or a
    blurred copy of ``images``)."""
    per_pixel = saliency.sum(dim=1).flatten(1)
    top = per_pixel.topk(k, dim=1).indices
    chosen = torch.zeros_like(per_pixel, dtype=torch.bool).scatter_(1, top, True)
    chosen = chosen.view(len(images), 1, *images.shape[2:])
    return torch.where(chosen, fill, images)
