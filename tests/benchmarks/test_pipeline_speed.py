"""Pipeline kernels against their limits, on mnist-5k test images and the built-in cnn.

Tracked ratios (extra_info):
- feature extraction at ``fc_layer.4`` (forward hook) / a plain forward pass: the
  hook overhead, target close to 1;
- scoring the logit-based scorers and MC dropout at 2x and 4x the test images /
  at 1x: linear growth means ratios near 2 and 4.

Run with `pytest tests/benchmarks --benchmark-only`. Nothing here asserts a time.
"""

from __future__ import annotations

import pytest

from probebench.pipeline.context import Batch
from probebench.pipeline.features import forward
from tests.benchmarks.conftest import BATCH_SIZE
from tests.benchmarks.timing import best_of, stat


@pytest.fixture(scope="module")
def setup(mnist_cnn):
    return mnist_cnn


def test_feature_extraction_vs_plain_forward(benchmark, setup):
    model, images, _ctx = setup
    plain = best_of(lambda: forward(model, images, (), BATCH_SIZE), 5)
    benchmark.pedantic(forward, args=(model, images, ("fc_layer.4",), BATCH_SIZE), rounds=5, iterations=1)
    benchmark.extra_info.update({"plain_forward_s": plain, "ratio_features_vs_plain_forward": stat(benchmark) / plain})


def _score_all(ctx, images):
    from probebench.plugins.scorers.logits import Doctor, Energy, Margin
    from probebench.plugins.scorers.mc_dropout import MCDropout
    from probebench.plugins.scorers.softmax import MSP, Entropy

    batch = Batch(ctx, images)
    for scorer in (MSP(), Entropy(), Margin(), Energy(), Doctor(), MCDropout()):
        scorer.score(ctx, batch)


def test_scoring_grows_linearly_with_test_images(benchmark, setup):
    _model, images, ctx = setup
    one = best_of(lambda: _score_all(ctx, images))
    two = best_of(lambda: _score_all(ctx, images.repeat(2, 1, 1, 1)))
    benchmark.pedantic(_score_all, args=(ctx, images.repeat(4, 1, 1, 1)), rounds=3, iterations=1)
    four = stat(benchmark)
    benchmark.extra_info.update({"seconds_1x": one, "ratio_2x_vs_1x": two / one, "ratio_4x_vs_1x": four / one})
