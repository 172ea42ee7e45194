"""The cnn's ``MaxPool2x2``: nn.MaxPool2d(2)'s numbers from a faster kernel."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probebench.plugins.classifiers._cnn_net import CNNNet, MaxPool2x2


@pytest.mark.parametrize("shape", [(16, 32, 26, 26), (7, 64, 11, 11), (3, 2, 5, 9), (1, 1, 2, 2)])
def test_same_maxima_and_gradients_as_nn_maxpool_even_on_ties(shape):
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=generator).relu() * 4).round() / 4  # zeros and other ties in most windows
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = MaxPool2x2()(ours), nn.MaxPool2d(2)(theirs)
    grad = torch.randn(expected.shape, generator=generator)
    out.backward(grad)
    expected.backward(grad)
    assert torch.equal(out, expected) and out.is_contiguous()
    assert torch.equal(ours.grad, theirs.grad) and ours.grad.is_contiguous()
    with torch.no_grad():
        assert torch.equal(MaxPool2x2()(x), nn.MaxPool2d(2)(x))


def test_under_torch_func_it_is_nn_maxpool():
    from torch.func import grad, vmap

    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))

    def total(pool):
        return lambda image: pool(image.unsqueeze(0)).sum()

    assert torch.equal(vmap(grad(total(MaxPool2x2())))(x), vmap(grad(total(nn.MaxPool2d(2))))(x))


def test_the_cnn_trains_to_the_same_bits_as_with_nn_maxpool():
    def trained(plain: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = CNNNet(10, (1, 28, 28))
        if plain:
            model.conv_layer[2], model.conv_layer[5] = nn.MaxPool2d(2), nn.MaxPool2d(2)
        optimiser = torch.optim.Adam(model.parameters(), 2e-3)
        generator = torch.Generator().manual_seed(2)
        for _ in range(6):
            x, y = torch.rand(32, 1, 28, 28, generator=generator), torch.randint(0, 10, (32,), generator=generator)
            loss = nn.functional.cross_entropy(model(x), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return [p.detach() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(trained(False), trained(True), strict=True))


def test_torch_fx_keeps_the_pools_as_modules_so_mc_dropout_splits_the_cnn():
    from probebench.plugins.scorers import _mc_dropout
    from probebench.plugins.scorers._graph import trace

    model = CNNNet(10, (1, 28, 28)).eval()
    traced = trace(model)
    assert traced is not None
    assert {"conv_layer.2", "conv_layer.5"} <= {n.target for n in traced.graph.nodes if n.op == "call_module"}
    split = _mc_dropout.plan(model)
    assert split.traced and split.cut == "fc_layer.2"


def test_a_torchscript_export_pools_as_nn_maxpool():
    model = CNNNet(10, (1, 28, 28)).eval()
    scripted = torch.jit.script(model)
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(scripted(x), model(x))
