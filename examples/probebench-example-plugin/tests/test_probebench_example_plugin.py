"""The example plugin keeps its kinds' contracts and is found through its entry point."""

import torch
from probebench_example_plugin import KNNDistance, RunnerUpStep

from probebench.testing import check_corrector, check_scorer, installed_registry, tiny_context, tiny_images


def test_installed_plugin_registers_both_components():
    registry = installed_registry()
    assert registry.get("scorer", "knn-distance") is KNNDistance
    assert registry.get("corrector", "runner-up-step") is RunnerUpStep
    assert registry.entry("scorer", "knn-distance").plugin.distribution == "probebench-example-plugin"


def test_knn_distance_is_higher_for_training_samples():
    ctx = tiny_context()
    scores = check_scorer(KNNDistance(k=1), ctx, images=ctx.train_images[:20])
    assert torch.allclose(torch.as_tensor(scores), torch.zeros(20, dtype=torch.float64), atol=1e-5)
    unseen = check_scorer(KNNDistance(k=1), ctx)
    assert unseen.max() < 0


def test_runner_up_step_makes_the_runner_up_the_prediction():
    ctx = tiny_context()
    images, _labels = tiny_images(ctx)
    with torch.no_grad():
        runner_up = ctx.classifier(images).topk(2, dim=1).indices[:, 1]
    correction = check_corrector(RunnerUpStep(step_size=0.02, max_steps=200), ctx, images)
    with torch.no_grad():
        after = ctx.classifier(correction.images).argmax(dim=1)
    assert (after == runner_up).all()
    assert (correction.steps >= 1).all() and (correction.steps <= 200).all()
    # the per-sample stop: a sample stops at the first step its prediction flips, and
    # the caller's torch.no_grad() does not stop the corrector from taking gradients
    i = int(correction.steps.argmax())
    assert correction.steps[i] > 1
    with torch.no_grad():
        short = RunnerUpStep(step_size=0.02, max_steps=int(correction.steps[i]) - 1).correct(ctx, images[i : i + 1])
        assert ctx.classifier(short.images).argmax(dim=1) != runner_up[i]
