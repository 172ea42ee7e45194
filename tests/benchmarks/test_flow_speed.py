"""Speed of the default flow generators on 28x28 digits: one training step
(batch 64) and decoding 128 latents with gradients, as latent optimisation does.
Run apart: ``pytest tests/benchmarks --benchmark-only``."""

from __future__ import annotations

import pytest
import torch

from probebench.plugins.generators.flows import Glow, RealNVP


@pytest.fixture(params=["glow", "realnvp"])
def flow(request):
    torch.manual_seed(0)
    return {"glow": Glow, "realnvp": RealNVP}[request.param]().build((1, 28, 28))


def test_training_step(benchmark, flow):
    images = torch.rand(64, 1, 28, 28)
    optimiser = torch.optim.Adam(flow.parameters(), lr=1e-4)

    def step():
        loss = flow.bits_per_dim(images).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    benchmark(step)


def test_decode_with_gradient(benchmark, flow):
    flow.eval().requires_grad_(False)
    z = torch.randn(128, 784, requires_grad=True)

    def decode():
        flow.decode(z).sum().backward()

    benchmark(decode)
