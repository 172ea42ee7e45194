"""``class-flow``: a class-conditional Gaussian base on the flow's latent as a
generative classifier, and analysis-by-synthesis edits toward its class, on
the toy correction problem (tests/toy_correction.py) with a second training
class so that the latent has two class regions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.naive_bayes import GaussianNB

from probebench.errors import UserError
from probebench.pipeline import correct as stage
from probebench.pipeline.generate import TrainedFlow
from probebench.plugins.correctors._class_flow import fit_class_gaussians
from probebench.plugins.correctors.class_flow import ClassFlow
from probebench.registry import Registry
from probebench.suite import Bootstrap, ComponentSpec
from tests import toy_correction as toy
from tests.conftest import builtin_modules


@pytest.fixture
def ctx():
    """The toy with training images of class 0 (mean brightness 0.6-0.8) and of
    class 1 (0.1-0.3): in the (identity) latent, test misses at 0.45-0.53 lie
    nearer class 0, their true class, which the classifier gets wrong."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    class_0 = toy.images_with_means(torch.linspace(0.6, 0.8, 30), seed=1)
    class_1 = toy.images_with_means(torch.linspace(0.1, 0.3, 30), seed=2)
    labels = torch.cat([torch.zeros(30, dtype=torch.long), torch.ones(30, dtype=torch.long)])
    yield dataclasses.replace(
        toy.context(level=toy.hit_level()), train_images=torch.cat([class_0, class_1]), train_labels=labels
    )
    torch.set_num_threads(threads)


def test_the_generative_classifier_equals_sklearns_gaussian_naive_bayes():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(300, 6)) + np.repeat(rng.normal(scale=2, size=(3, 6)), 100, axis=0)
    labels = np.repeat([0, 1, 2], 100)
    rows[:100] *= 0.5  # unequal class variances
    test = rng.normal(scale=2, size=(50, 6))
    gaussians = fit_class_gaussians(torch.tensor(rows), torch.tensor(labels), 3, shrinkage=0.0)
    ours = gaussians.log_joint(torch.tensor(test)).numpy()
    theirs = GaussianNB(var_smoothing=1e-12).fit(rows, labels).predict_joint_log_proba(test)
    constant = -0.5 * 6 * np.log(2 * np.pi)  # ours leaves it out
    np.testing.assert_allclose(ours + constant, theirs, rtol=1e-6, atol=1e-6)


def test_shrinkage_pulls_class_variances_to_the_pooled_one():
    rows = torch.tensor([[0.0], [2.0], [10.0], [10.5]])
    labels = torch.tensor([0, 0, 1, 1])
    pooled = torch.tensor([(1 + 1 + 0.0625 + 0.0625) / 4])
    full = fit_class_gaussians(rows, labels, 2, shrinkage=1.0)
    assert torch.allclose(full.var, pooled.expand(2, 1))
    assert torch.allclose(fit_class_gaussians(rows, labels, 2, shrinkage=0.0).var, torch.tensor([[1.0], [0.0625]]))


@pytest.mark.parametrize("mode", ["edit", "relabel"])
def test_class_flow_corrects_the_constructed_misses(ctx, mode):
    images, labels = toy.cell()
    result = ClassFlow(mode=mode, lr=0.05).correct(ctx, images)
    after = result.predictions if mode == "relabel" else ctx.classifier(result.images).argmax(dim=1)
    misses = slice(0, 6)
    assert torch.equal(after[misses], labels[misses])
    assert (result.details["target"][misses] == 0).all()  # the highest density other than the prediction 1
    assert (result.details["generative_prediction"] == 0).all()  # the latent sees every test image as a 0
    if mode == "edit":
        assert (result.steps[misses] > 0).all() and (result.details["reached"][misses]).all()


def test_only_disagreeing_leaves_the_images_the_generative_classifier_agrees_with(ctx):
    images, labels = toy.cell()
    result = ClassFlow(only_disagreeing=True, lr=0.05).correct(ctx, images)
    hits = slice(6, None)
    assert torch.equal(ctx.classifier(result.images).argmax(dim=1), labels)
    assert (result.steps[hits] == 0).all() and torch.equal(result.images[hits], images[hits])
    assert (result.details["target"][hits] == -1).all()


def test_the_stage_runs_class_flow_by_name_and_judges_it(ctx):
    registry = Registry(builtin_modules())
    spec = ComponentSpec("class-flow", {"only_disagreeing": True, "lr": 0.05}, "flow-class-edit")
    given = stage.Guide(ctx.prober, threshold=0.5, level=ctx.prober_hit_level)
    state = stage.setup([spec], registry, ctx, {"generator": TrainedFlow(ctx.generator)}, {"prober": given})
    images, labels = toy.cell()
    table = pd.DataFrame(stage.correct_images(ctx, state, images, labels, Bootstrap(resamples=100, seed=0)))
    value = table.set_index(["method", "metric"])["value"]
    assert value["flow-class-edit", "correction-rate"] == 1.0 and value["flow-class-edit", "break-rate"] == 0.0
    assert value["flow-class-edit", "net-accuracy-gain"] == pytest.approx(6 / 16)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "push"}, "mode must be one of edit, relabel"),
        ({"shrinkage": 1.5}, r"shrinkage must lie in \[0, 1\]"),
        ({"only_disagreeing": "yes"}, "only_disagreeing must be true or false"),
        ({"max_steps": 0}, "max_steps must be an integer >= 1"),
    ],
)
def test_bad_options_name_the_option(options, message):
    with pytest.raises(UserError, match=message):
        ClassFlow(**options)
