"""Score stage: the classifier's predictions on a test cell and every
scorer's confidence per sample (higher = more confident the prediction is right).

Predictions and each (scorer, cell) score vector are cached, so an
interrupted run recomputes nothing it finished, and a fully cached cell loads
no images and prepares no scorer. A scorer that raises, or returns scores of
the wrong shape or with NaN, fails only its own cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from probebench.cache import hash_key
from probebench.console import running
from probebench.kinds import can_guide
from probebench.pipeline.attack import cell_images
from probebench.pipeline.cells import Cell
from probebench.pipeline.context import Batch, Context
from probebench.pipeline.failures import Failures
from probebench.pipeline.stage import Run
from probebench.results import CLEAN
from probebench.suite import ComponentSpec

if TYPE_CHECKING:
    from probebench.registry import Registry


def check_scores(scores: Any, n: int) -> np.ndarray:
    """Scores as a finite float array of length ``n``, or a ValueError saying why not."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (n,):
        raise ValueError(f"returned scores of shape {list(scores.shape)}, expected [{n}]")
    bad = int((~np.isfinite(scores)).sum())
    if bad:
        raise ValueError(f"returned {bad} NaN or infinite scores of {n}")
    return scores


def check_predictions(payload: dict[str, Any], num_classes: int) -> None:
    """A cell's cached predictions and labels: integer vectors of one length, classes in range; else a ValueError."""
    for name in ("predictions", "labels"):
        values = payload[name]
        if not isinstance(values, torch.Tensor) or values.dim() != 1 or values.is_floating_point():
            raise ValueError(f"{name} are not an integer vector")
        if len(values) and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} lie outside 0..{num_classes - 1}")
    if len(payload["predictions"]) != len(payload["labels"]):
        raise ValueError(f"{len(payload['predictions'])} predictions for {len(payload['labels'])} labels")


class Scorer:
    """A suite's scorer for one seed, created and prepared only when a cell
    actually needs computing (a fully cached cell costs no preparation)."""

    def __init__(self, spec: ComponentSpec, registry: Registry, ctx: Context):
        self.spec, self.registry, self.ctx = spec, registry, ctx
        self.cls = registry.get("scorer", spec.name)
        self.key = hash_key(
            "scores",
            ctx.classifier_key,
            spec.name,
            spec.options,
            getattr(self.cls, "version", "1"),
            registry.entry("scorer", spec.name).plugin.version,
        )
        self._instance = None
        self.failed = False

    @property
    def guides(self) -> bool:
        """It declares the ``Guide`` capability: it can guide correctors."""
        return can_guide(self.cls)

    @property
    def facts(self) -> dict[str, Any]:
        """What the scorer learnt about itself in ``prepare`` (e.g. a prober's training data); {} if not prepared."""
        return dict(getattr(self._instance, "facts", None) or {})

    def prepared(self, failures: Failures) -> Any:
        """The prepared scorer; None once creating or preparing it failed (the
        failure is recorded once: every cell of this seed would fail the same way)."""
        if self.failed:
            return None
        info = failures.call(self._prepare, "scorer", self.spec.label, "prepare", f"seed={self.ctx.seed}")
        self.failed = info.error is not None
        return None if self.failed else info.result

    def _prepare(self) -> Any:
        if self._instance is None:
            scorer = self.registry.create("scorer", self.spec.name, self.spec.options)
            if hasattr(scorer, "prepare"):
                torch.manual_seed(self.ctx.seed)
                scorer.prepare(self.ctx)
            self._instance = scorer
        return self._instance


class CellInputs:
    """A cell's images, labels and shared ``Batch``, loaded only when something
    about the cell is not in the cache."""

    def __init__(self, run: Run, ctx: Context, cell: Cell):
        self.run, self.ctx, self.cell = run, ctx, cell
        self.key = cell.key(run.registry, ctx.classifier_key)

    @cached_property
    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        return cell_images(self.run, self.ctx, self.cell)

    @cached_property
    def batch(self) -> Batch:
        return Batch(self.ctx, self.data[0], cell={"split": "test", "cell": self.key})


@dataclass
class Scored:
    """A cell's labels, the classifier's predictions and each scorer's
    confidences (by suite label; a failed scorer has none)."""

    labels: torch.Tensor
    predictions: torch.Tensor
    confidences: dict[str, np.ndarray]
    probabilities: np.ndarray | None = None  # [N, C] softmax, when a metric needs it

    @property
    def hit(self) -> np.ndarray:
        return (self.predictions == self.labels).numpy()


def score_cell(run: Run, ctx: Context, scorers: list[Scorer], cell: Cell, probabilities: bool = False) -> Scored:
    """The cell's ``Scored``; with ``probabilities``, the classifier's softmax
    too (cached beside the predictions, under the same key)."""
    inputs = CellInputs(run, ctx, cell)
    cached = run.store.get_or_build(
        "predictions",
        inputs.key,
        lambda: {"predictions": inputs.batch.predictions, "labels": inputs.data[1]},
        check=lambda payload: check_predictions(payload, ctx.num_classes),
    )
    labels = cached["labels"]
    confidences = {}
    for scorer in scorers:
        on = "clean" if cell.name == CLEAN else f"{cell.name} severity {cell.severity}"
        running(f"scorer {scorer.spec.label} on {on}")
        scores = None if scorer.failed else _scores(run, ctx, scorer, inputs, len(labels))
        if scores is not None:
            confidences[scorer.spec.label] = scores
    probs = None
    if probabilities:
        stored = run.store.get_or_build("probabilities", inputs.key, lambda: {"probabilities": inputs.batch.probs})
        probs = stored["probabilities"].detach().cpu().double().numpy()
    return Scored(labels, cached["predictions"], confidences, probs)


def _scores(run: Run, ctx: Context, scorer: Scorer, inputs: CellInputs, n: int) -> np.ndarray | None:
    """One scorer's scores on the cell, from the cache or computed and cached; None when it failed."""
    key = hash_key(scorer.key, inputs.key)
    cached = run.store.load("scores", key, check=lambda payload: check_scores(payload["scores"], n))
    if cached is not None:  # validated exactly as fresh scores are
        return check_scores(cached["scores"], n)
    instance = scorer.prepared(run.failures)
    if instance is None:
        return None

    def score() -> np.ndarray:
        torch.manual_seed(ctx.seed)
        return check_scores(instance.score(ctx, inputs.batch), n)

    info = run.failures.call(score, "scorer", scorer.spec.label, "score", inputs.cell.where(ctx.seed))
    if info.error is not None:
        return None
    run.store.save("scores", key, {"scores": torch.from_numpy(info.result)})
    return info.result
