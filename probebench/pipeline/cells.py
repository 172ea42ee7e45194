"""Test cells: what the score, evaluate and correct stages run on, one at a time.

A cell is the clean test split, one (corruption, severity) of it, one
(attack, severity) crafted against the classifier (``attack.py``), or a
pre-corrupted test set the dataset ships itself (CIFAR-10-C, CURE-TSR). A leaf
module: the stages name cells through it and it imports none of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probebench.cache import hash_key
from probebench.results import CLEAN
from probebench.suite import AttackSpec, CorruptionSpec, Suite

if TYPE_CHECKING:
    from probebench.registry import Registry


@dataclass(frozen=True)
class Cell:
    """``corruption`` is None (the clean test split), a suite's
    ``CorruptionSpec`` applied at ``severity`` (an ``AttackSpec`` for an
    attack), or the name of a cell the dataset ships."""

    corruption: CorruptionSpec | str | None = None
    severity: int = 0

    @property
    def name(self) -> str:
        """The corruption column of the cell's rows: ``none``, a corruption plugin's name, or a dataset cell's."""
        if self.corruption is None:
            return CLEAN
        return self.corruption if isinstance(self.corruption, str) else self.corruption.name

    def key(self, registry: Registry, classifier_key: str) -> str:
        """The cache key of the cell's images as a classifier sees them (its
        predictions, features, scores and corrections are keyed under it)."""
        corruption = self.corruption
        if isinstance(corruption, str):  # a dataset's own cell: the classifier key already names the dataset
            return hash_key(classifier_key, "dataset-cell", corruption, self.severity)
        kind = ["attack"] if self.kind == "attack" else []  # corruption cells keep the keys they had
        return hash_key(
            classifier_key,
            *kind,
            corruption.name if corruption else None,
            corruption.options if corruption else None,
            getattr(registry.get(self.kind, corruption.name), "version", "1") if corruption else None,
            self.severity,
        )

    @property
    def kind(self) -> str:
        """The component kind that makes the cell's images: ``attack`` or ``corruption``."""
        return "attack" if isinstance(self.corruption, AttackSpec) else "corruption"

    def where(self, seed: int) -> str:
        """How failures name the cell: ``seed=0 corruption=noise severity=3``."""
        return f"seed={seed} corruption={self.name} severity={self.severity}"

    def tag(self, seed: int) -> str:
        """How artifact file names name the cell: ``seed0_noise-3``."""
        return f"seed{seed}_{self.name}-{self.severity}"

    def columns(self, suite: Suite, seed: int, classifier: str | None = None) -> dict[str, Any]:
        """The key columns of the cell's result rows (``classifier``: the suite's label unless given)."""
        return {
            "suite": suite.name,
            "dataset": suite.dataset.label,
            "corruption": self.name,
            "severity": self.severity,
            "classifier": suite.classifier.label if classifier is None else classifier,
            "seed": seed,
        }


def suite_cells(suite: Suite, dataset_cells: Iterable[tuple[str, int]] = ()) -> list[Cell]:
    """The cells of a run in order: clean (unless ``clean = false``), each
    corruption of the suite at each of its severities, each attack at each of
    its severities, then the cells the dataset ships (``dataset_cells``:
    (name, severity) pairs)."""
    cells = [Cell()] if suite.clean else []
    for spec in (*suite.corruptions, *suite.attacks):
        cells += [Cell(spec, severity) for severity in spec.severities]
    return cells + [Cell(name, severity) for name, severity in dataset_cells]
