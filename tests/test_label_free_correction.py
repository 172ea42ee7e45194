"""Class-aware correctors, flow purification and the test-time-adaptation peers
on the toy correction problem (tests/toy_correction.py: every label is 0, the
classifier predicts 0 when the mean brightness m > 0.55), and the stage
judging a method's own predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from probebench.errors import UserError
from probebench.executors.local import torch_threads
from probebench.pipeline import correct as stage
from probebench.pipeline.generate import TrainedFlow
from probebench.plugins.correctors._adaptation import adapted_parameters, shifted
from probebench.plugins.correctors._class_aware import disagreeing_target
from probebench.plugins.correctors.adaptation import AugmentedPredictions, Tent
from probebench.plugins.correctors.class_aware import ClassTarget, LatentShrink
from probebench.registry import Registry
from probebench.suite import Bootstrap, ComponentSpec
from tests import toy_correction as toy
from tests.conftest import builtin_modules


@pytest.fixture
def ctx():
    with torch_threads(1):
        yield toy.context(level=toy.hit_level())


def test_the_target_is_the_most_voted_class_other_than_the_prediction():
    votes = torch.tensor([[1, 1, 2, 2, 2], [0, 0, 0, 0, 0], [3, 3, 1, 1, 0]])
    target, has = disagreeing_target(votes, torch.tensor([2, 0, 0]), 4, min_votes=2)
    assert target.tolist()[0] == 1 and has.tolist() == [True, False, True]  # 2 is the prediction: 1 wins
    assert target[2] == 1  # a tie between 1 and 3 goes to the smaller class
    assert not disagreeing_target(votes, torch.tensor([2, 0, 0]), 4, min_votes=3)[1][0]


@pytest.mark.parametrize("mode", ["edit", "relabel"])
def test_knn_target_fixes_every_toy_miss_and_leaves_the_hits_alone(ctx, mode):
    """The training misses near a test miss carry its true label 0: the vote is
    the right class, the prober plays no part in choosing it."""
    images, labels = toy.cell()
    result = ClassTarget(source="knn", mode=mode, layer="1", k=5, lr=0.05).correct(ctx, images)
    after = result.predictions if mode == "relabel" else ctx.classifier(result.images).argmax(dim=1)
    assert torch.equal(after, labels)
    hits = slice(6, None)
    assert (result.steps[hits] == 0).all() and torch.equal(result.images[hits], images[hits])
    assert (result.details["target"][:6] == 0).all() and (result.details["target"][hits] == -1).all()


def test_mc_dropout_target_without_dropout_never_disagrees_so_nothing_changes(ctx):
    images, _ = toy.cell()
    result = ClassTarget(source="mc-dropout", passes=5).correct(ctx, images)
    assert (result.steps == 0).all() and torch.equal(result.images, images)


def test_latent_shrink_scales_the_latent_toward_the_flows_mode(ctx):
    images, _ = toy.cell()
    result = LatentShrink(factor=0.5).correct(ctx, images)  # identity flow: decode(0.5 z) = 0.5 x
    assert torch.allclose(result.images, 0.5 * images) and (result.steps == 1).all()


def test_shifted_views_move_content_and_fill_with_zeros():
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    assert shifted(x, 1, 0)[0, 0].tolist() == [[0, 0, 0], [1, 2, 3], [4, 5, 6]]
    assert shifted(x, 0, -1)[0, 0].tolist() == [[2, 3, 0], [5, 6, 0], [8, 9, 0]]


def test_tta_keeps_a_shift_invariant_classifiers_answers(ctx):
    """Content in the centre 2x2 stays inside a 4x4 image under 1-pixel shifts, and the
    toy classifier reads the pixel sum: every view agrees, so TTA predicts as the classifier does."""
    means = torch.linspace(0.1, 0.3, 12)  # whole-image means 0.1..0.3: the centre holds 4x that
    images = torch.zeros(12, 1, 4, 4)
    images[:, :, 1:3, 1:3] = (4 * means).clamp(max=1).view(-1, 1, 1, 1)
    result = AugmentedPredictions().correct(ctx, images)
    assert torch.equal(result.predictions, ctx.classifier(images).argmax(dim=1))
    assert torch.equal(result.images, images) and (result.steps == 0).all()


def test_tent_adapts_linear_biases_of_a_net_without_normalisation_on_a_copy(ctx):
    assert adapted_parameters(ctx.classifier)[0] == "linear biases"
    with_norm = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    what, params = adapted_parameters(with_norm)
    assert what == "normalisation affine parameters" and len(params) == 2
    before = [p.clone() for p in ctx.classifier.parameters()]
    images, _ = toy.cell()
    result = Tent(lr=0.1, epochs=3).correct(ctx, images)
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.classifier.parameters()))  # never changed
    assert result.predictions.shape == (16,) and int(result.details["adapted_parameters"][0]) == 2
    with pytest.raises(UserError, match="epochs must be an integer >= 1"):
        Tent(epochs=0)


def test_the_stage_judges_a_methods_own_predictions_with_the_same_metrics(ctx):
    registry = Registry(builtin_modules())
    specs = [
        ComponentSpec("class-target", {"source": "knn", "mode": "relabel", "layer": "1", "k": 5}, "knn-relabel"),
        ComponentSpec("tta"),
    ]
    given = stage.Guide(ctx.prober, threshold=0.5, level=ctx.prober_hit_level)
    state = stage.setup(specs, registry, ctx, {"generator": TrainedFlow(ctx.generator)}, {"prober": given})
    images, labels = toy.cell()
    boot = Bootstrap(resamples=100, confidence=0.9, seed=0)
    table = pd.DataFrame(stage.correct_images(ctx, state, images, labels, boot))
    value = table.set_index(["method", "metric"])["value"]
    assert value["knn-relabel", "correction-rate"] == 1.0 and value["knn-relabel", "break-rate"] == 0.0
    assert value["knn-relabel", "net-accuracy-gain"] == pytest.approx(6 / 16)  # P(hit) < 0.5 flags the 6 misses
    assert value["knn-relabel", "loop-accuracy"] == 1.0
    assert np.isfinite(value["tta", "correction-rate"])

    class Wrong:
        def correct(self, ctx, images):
            from probebench.kinds import Correction

            return Correction(images, torch.zeros(len(images), dtype=torch.long), predictions=torch.full((3,), 0))

    state.bound.append(stage.Bound("wrong", Wrong(), None))
    failures = []
    stage.correct_images(ctx, state, images, labels, boot, on_failure=lambda m, e: failures.append((m, str(e))))
    assert failures == [("wrong", "returned predictions of shape [3] (torch.int64), expected int [16]")]
