"""Checks of what a counterfactual generator's edits keep and point at (torch;
used by ``examples/cfgan_judge.py`` and ``examples/cfgan_deletion.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


def gan_and_judge(gan_suite: str, judge_suite: str, seeds: list[int]) -> tuple[Any, Iterator[tuple[int, Any, Any]]]:
    """The test split of ``gan_suite`` and, per seed, (seed, its cf-gan, the
    judge: ``judge_suite``'s classifier with the same seed), read from the
    artifact cache (``$PROBEBENCH_CACHE``; a missing model is trained here):
    what ``examples/cfgan_judge.py`` and ``examples/cfgan_deletion.py`` load."""
    from probebench.cache import ArtifactStore
    from probebench.pipeline.data import load_splits
    from probebench.pipeline.train import trained_classifier
    from probebench.registry import Registry
    from probebench.suite import load_config, parse_suite

    config = load_config()
    registry = Registry(config.builtin)
    gan, judge = parse_suite(config, gan_suite, registry), parse_suite(config, judge_suite, registry)
    splits = load_splits(registry, gan.dataset, gan.data_root)
    store = ArtifactStore()

    def models() -> Iterator[tuple[int, Any, Any]]:
        for seed in seeds:
            made, _ = trained_classifier(registry, store, gan.dataset, gan.classifier, splits, seed, "cpu")
            judging, _ = trained_classifier(registry, store, judge.dataset, judge.classifier, splits, seed, "cpu")
            yield seed, made, judging

    return splits, models()
