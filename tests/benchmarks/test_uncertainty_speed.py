"""Cost of the uncertainty baselines on the 1,000 mnist-5k test images with the
built-in cnn (width 32), against the plain passes they are measured by.

Tracked ratios (in extra_info; targets from issue 5):
- ``gradtrust`` (demo and counterfactual forms, each on a fresh batch: trunk
  pass + per-sample gradients for the demo, + the closed form of the
  gradients' variances for the counterfactual form) / one plain forward pass:
  target <= 1.2;
- a per-sample backward loop / gradtrust: target >= 3 (how much faster vmap is);
- gradtrust / its closed form on the logits (forward pass + formula);
- ``mc-dropout`` T=20 (trunk once, tail 20x batched) / 20 full passes with
  dropout on: target <= 0.35.

Run with `pytest tests/benchmarks --benchmark-only`. Nothing here asserts a time.
"""

from __future__ import annotations

import pytest
import torch

from probebench.pipeline.context import Batch
from probebench.pipeline.features import forward
from probebench.plugins.scorers import _gradients as G
from probebench.plugins.scorers._mc_dropout import dropout_modules, dropout_sampling
from probebench.plugins.scorers.gradients import GradTrust
from probebench.plugins.scorers.mc_dropout import MCDropout
from tests.benchmarks.conftest import BATCH_SIZE
from tests.benchmarks.timing import best_of, stat


@pytest.fixture(scope="module")
def setup(mnist_cnn):
    model, images, ctx = mnist_cnn
    return model, images, ctx, best_of(lambda: forward(model, images, (), BATCH_SIZE), 5)


def _score_fresh(scorer, ctx, images):
    return scorer.score(ctx, Batch(ctx, images))  # a fresh batch: no shared pass to lean on


def _demo_gradtrust_seconds(ctx, images):
    """Best time of the demo form on a fresh batch, what the two benchmarks after the first compare with."""
    scorer = GradTrust(variant="demo")
    scorer.prepare(ctx)
    return best_of(lambda: _score_fresh(scorer, ctx, images))


def _fastest_round(benchmark, fn, *args, rounds: int) -> float:
    """Times ``fn(*args)`` for ``rounds`` rounds of one call under pytest-benchmark; the fastest."""
    benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1)
    return stat(benchmark)


@pytest.mark.parametrize("variant", ["demo", "counterfactual"])
def test_gradtrust_vs_forward_pass(benchmark, setup, variant):
    _model, images, ctx, forward_s = setup
    scorer = GradTrust(variant=variant)
    scorer.prepare(ctx)
    _score_fresh(scorer, ctx, images)  # warm up torch.func
    seconds = _fastest_round(benchmark, _score_fresh, scorer, ctx, images, rounds=5)
    benchmark.extra_info.update(
        {
            "ratio_vs_forward": seconds / forward_s,
            "forward_s": forward_s,
            "gradtrust_s": seconds,
            "target_ratio_max": 1.2,
        }
    )


def test_gradtrust_per_sample_loop(benchmark, setup):
    """The naive implementation: one forward and one backward per image."""
    model, images, ctx, _ = setup
    gradtrust_s = _demo_gradtrust_seconds(ctx, images)
    dummy = torch.zeros(len(images), dtype=torch.long)

    def loop():
        grads = G.per_sample_loop(model, "fc_layer.6", images, G.mse_uniform, dummy)
        energy = grads.pow(2).var(dim=2)
        return energy.max(dim=1).values / energy.mean(dim=1)

    seconds = _fastest_round(benchmark, loop, rounds=1)
    benchmark.extra_info.update(
        {"loop_over_gradtrust": seconds / gradtrust_s, "loop_s": seconds, "gradtrust_s": gradtrust_s, "target_min": 3.0}
    )


def test_gradtrust_closed_form(benchmark, setup):
    """The speed limit of the demo form at the last layer: logits + a formula."""
    model, images, ctx, _ = setup
    gradtrust_s = _demo_gradtrust_seconds(ctx, images)

    def closed_form():
        return G.demo_trust_closed_form(forward(model, images, (), BATCH_SIZE)[0])

    seconds = _fastest_round(benchmark, closed_form, rounds=5)
    benchmark.extra_info.update(
        {"gradtrust_over_closed_form": gradtrust_s / seconds, "closed_form_s": seconds, "gradtrust_s": gradtrust_s}
    )


def test_mc_dropout_vs_full_passes(benchmark, setup):
    model, images, ctx, _ = setup
    passes = 20

    def full_passes():
        with torch.no_grad(), dropout_sampling(dropout_modules(model)):
            return torch.stack(
                [
                    torch.cat(
                        [model(images[s : s + BATCH_SIZE]).softmax(dim=1) for s in range(0, len(images), BATCH_SIZE)]
                    )
                    for _ in range(passes)
                ]
            )

    full_s = best_of(full_passes, 2)
    scorer = MCDropout(T=passes)
    scorer.prepare(ctx)
    seconds = _fastest_round(benchmark, _score_fresh, scorer, ctx, images, rounds=5)
    benchmark.extra_info.update(
        {
            "ratio_vs_full_passes": seconds / full_s,
            "full_passes_s": full_s,
            "mc_dropout_s": seconds,
            "target_ratio_max": 0.35,
        }
    )
