"""What a stage hands to components: a frozen ``Context`` of trained
artifacts and a ``Batch`` of test images whose model outputs are computed
lazily and shared, so methods that need only logits cost no extra pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from probebench.pipeline.features import cached_forward, forward


@dataclass(frozen=True)
class Context:
    """Trained artifacts for one (dataset, classifier, seed).

    Frozen: a component reads it and never changes it; a stage that has more
    to hand over makes a new one with ``dataclasses.replace`` (the correction
    stage does, for each corrector run).

    ``train_images``/``train_labels`` are the classifier's training split (a
    prober may learn from outcomes on it); ``artifact(stage, parts, build)``
    caches a component's own expensive output under a key made of ``parts``
    plus this context's classifier key (an optional fourth argument
    ``check(payload)`` raises ValueError to reject a stored payload, which is
    then reported and rebuilt); ``train_classifier(seed)`` returns
    another classifier of the same suite trained with ``seed`` (cached), for
    ensembles, or with ``subset`` (indices into the training split) and
    ``options`` (overriding the classifier's) a model trained on part of the
    training data, e.g. the fold models of cross-fitting; ``registry`` looks
    components up by name (e.g. corruptions for augmentation);
    ``val_images``/``val_labels`` are the suite's validation split
    (``validation = N`` in the suite: images held out of the training split
    that nothing trains on), else None. ``test_images``/``test_labels`` are
    the clean test split; no component may learn from them except one that
    declares the leak in its name, as the ``prober`` scorer's
    ``source = "reference-add-split"`` does (the reference protocol).

    ``generator``, ``prober``, ``prober_hit_level`` and ``prober_threshold``
    are what a corrector works with; the correction stage sets them (see
    ``probebench/pipeline/correct.py``) and they are None everywhere else.
    """

    classifier: torch.nn.Module
    classifier_key: str
    num_classes: int
    shape: tuple[int, int, int]
    device: torch.device
    seed: int
    batch_size: int
    train_images: torch.Tensor
    train_labels: torch.Tensor
    artifact: Callable[..., dict]  # (stage, parts, build, check=None) -> payload
    train_classifier: Callable[..., torch.nn.Module]
    registry: Any = None
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    generator: Any = None  # a flow with encode(x) -> z and decode(z) -> x
    prober: Callable[[torch.Tensor], torch.Tensor] | None = None  # images -> P(hit), differentiable
    prober_hit_level: float | None = None  # the default stop level: median P(hit) of validation hits
    prober_threshold: float | None = None  # the label-free loop flags images with P(hit) below it
    test_images: torch.Tensor | None = None  # the clean test split: only for declared leaks (see above)
    test_labels: torch.Tensor | None = None

    def forward(
        self, images: torch.Tensor, layers: tuple[str, ...] = ()
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and features at ``layers`` of the classifier, batched, on the CPU."""
        return forward(self.classifier, images, layers, self.batch_size, self.device)


class Batch:
    """Test images of one cell with their lazily computed, shared model outputs.

    ``cell`` describes which images these are, as ``cached_forward``'s
    ``where`` (the score stage passes ``{"split": "test", "cell": <the cell's
    cache key>}``); when given, the logits and features are cached per
    (classifier, layer, cell) in the artifact store. Leave it None for images
    made on the fly (edited ones).
    """

    def __init__(self, ctx: Context, images: torch.Tensor, cell: dict | None = None):
        self.ctx = ctx
        self.images = images
        self.cell = cell
        self._features: dict[str, torch.Tensor] = {}
        self._logits: torch.Tensor | None = None

    def prefetch(self, layers: tuple[str, ...]) -> None:
        """Compute logits and the features of ``layers`` not yet seen in one pass."""
        missing = tuple(layer for layer in layers if layer not in self._features)
        if self._logits is not None and not missing:
            return
        if self.cell is None:
            logits, features = self.ctx.forward(self.images, missing)
        else:
            logits, features = cached_forward(self.ctx, self.images, missing, self.cell)
        self._logits = logits if self._logits is None else self._logits
        self._features.update(features)

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            self.prefetch(())
        assert self._logits is not None  # prefetch computed them
        return self._logits

    def features(self, layer: str) -> torch.Tensor:
        if layer not in self._features:
            self.prefetch((layer,))
        return self._features[layer]

    @cached_property
    def probs(self) -> torch.Tensor:
        return self.logits.softmax(dim=1)

    @cached_property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(dim=1)

    def __len__(self) -> int:
        return len(self.images)
