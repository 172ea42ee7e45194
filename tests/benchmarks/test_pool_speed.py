"""A training step of the default suite's cnn (batch 128, one torch thread)
with its ``MaxPool2x2`` against the same step with ``nn.MaxPool2d(2)``, in one
run. Tracked (extra_info): ``ratio_step_maxpool2x2_over_nn`` (best of 3
rounds of 20 steps each) and both ways' milliseconds per step.
Run with `pytest tests/benchmarks/test_pool_speed.py --benchmark-only -s`.
"""

from __future__ import annotations

import torch
from timing import best_of
from torch import nn

from probebench.executors.local import torch_threads
from probebench.plugins.classifiers._cnn_net import CNNNet


def stepper(plain: bool):
    torch.manual_seed(0)
    model = CNNNet(10, (1, 28, 28))
    if plain:
        model.conv_layer[2], model.conv_layer[5] = nn.MaxPool2d(2), nn.MaxPool2d(2)
    optimiser = torch.optim.Adam(model.parameters(), 2e-3)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))

    def steps():
        for _ in range(20):
            loss = nn.functional.cross_entropy(model(x), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

    steps()  # warm-up
    return steps


def test_cnn_step_with_maxpool2x2(benchmark):
    measured = {}

    def both():
        with torch_threads(1):
            ours, plain = stepper(False), stepper(True)
            for _ in range(3):  # interleaved, so both ways see the same machine
                measured["ours"] = min(measured.get("ours", float("inf")), best_of(ours, 1))
                measured["nn"] = min(measured.get("nn", float("inf")), best_of(plain, 1))

    benchmark.pedantic(both, rounds=1, iterations=1)
    benchmark.extra_info.update(
        {
            "ratio_step_maxpool2x2_over_nn": measured["ours"] / measured["nn"],
            "ms_per_step_maxpool2x2": measured["ours"] / 20 * 1000,
            "ms_per_step_nn": measured["nn"] / 20 * 1000,
        }
    )
