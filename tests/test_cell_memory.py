"""No stage holds every test cell's images, logits or features at once: what a
cell needs is alive while it is scored and gone when the next one is (issue 25,
item 5). A scorer plugin counts, each time it scores a cell, the live tensors
of one cell's size (images, logits, features, probabilities: first dimension
the number of test images)."""

from __future__ import annotations

import gc
import warnings

import pytest
import torch

from probebench.hookspecs import hookimpl

CELLS = """
[suite.cells]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp", "cell-tensors"]
metrics = ["accuracy", "auroc"]
seeds = [0]
bootstrap = { resamples = 0 }
corruptions = [{ name = "cure-noise", severities = [1, 3, 5] }, { name = "cure-haze", severities = [1, 3, 5] }]
"""


class CellTensors:
    """Scores like MSP after reading the cell's features; records how many
    live tensors have the cell's length at that moment."""

    name = "cell-tensors"
    live: list[int] = []
    held: list[torch.Tensor] = []

    def score(self, ctx, batch):
        batch.features("fc_layer.4")
        n = len(batch)
        gc.collect()
        with warnings.catch_warnings():  # isinstance on some torch objects warns of their deprecation
            warnings.simplefilter("ignore")
            tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
        CellTensors.live.append(sum(1 for t in tensors if t.dim() >= 2 and len(t) == n))
        CellTensors.held.extend(self.hold(batch))
        return batch.probs.max(dim=1).values

    def hold(self, batch):  # what this scorer keeps of a cell: nothing (the test's own check holds something)
        return []


class CellTensorsPlugin:
    @hookimpl
    def register_scorers(self):
        return [CellTensors]


def test_scoring_cell_after_cell_keeps_one_cells_tensors_alive(tiny_registry, tmp_path):
    from probebench.cache import ArtifactStore
    from probebench.pipeline.run import run_suite
    from probebench.registry import Registry
    from probebench.suite import load_config, parse_suite

    config = load_config(tiny_registry(CELLS))
    registry = Registry(config.builtin)
    registry.add_plugin(CellTensorsPlugin(), "cell-tensors")
    suite = parse_suite(config, "cells", registry)
    CellTensors.live.clear()
    CellTensors.held.clear()
    outcome = run_suite(suite, registry, ArtifactStore(tmp_path / "cache"), torch.device("cpu"), tmp_path / "out")
    assert not outcome.failures
    live = CellTensors.live
    assert len(live) == 7  # clean + 2 corruptions x 3 severities
    # the clean test images stay (the corruptions start from them); nothing accumulates from cell to cell
    assert max(live) == live[1] and live[-1] == live[1], live


def test_the_count_sees_a_scorer_that_keeps_each_cells_features(tiny_registry, tmp_path, monkeypatch):
    """The check above can fail: a scorer that keeps every cell's features is caught."""
    monkeypatch.setattr(CellTensors, "hold", lambda self, batch: [batch.features("fc_layer.4")])
    with pytest.raises(AssertionError):
        test_scoring_cell_after_cell_keeps_one_cells_tensors_alive(tiny_registry, tmp_path)
    CellTensors.held.clear()
