"""Shared set-up of the benchmarks: the mnist-5k test images and an untrained cnn."""

from __future__ import annotations

import pytest
import torch

BATCH_SIZE = 256


@pytest.fixture(scope="module")
def mnist_cnn():
    """(model, the 1,000 test images, a Context over them), the model warmed up."""
    from probebench.pipeline.context import Context
    from probebench.pipeline.features import forward
    from probebench.plugins.classifiers._cnn_net import CNNNet
    from probebench.plugins.datasets.mnist5k import Mnist5k

    images, _ = Mnist5k().load("test")
    images = images[:1000]
    torch.manual_seed(0)
    model = CNNNet(10, (1, 28, 28)).eval()
    ctx = Context(
        model,
        "bench",
        10,
        (1, 28, 28),
        torch.device("cpu"),
        0,
        BATCH_SIZE,
        images[:8],
        torch.zeros(8, dtype=torch.long),
        lambda stage, parts, build: build(),
        lambda seed: model,
    )
    forward(model, images, (), BATCH_SIZE)  # warm up
    return model, images, ctx
