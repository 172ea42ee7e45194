"""Speed of corruptions (run apart: pytest tests/benchmarks --benchmark-only).

CURE-TSR types on 1,000 MNIST-sized images (a test split), ImageNet-C ones on
20 images (they run one image at a time through NumPy).
"""

from __future__ import annotations

import pytest
import torch

from probebench.plugins.corruptions.cure_tsr import CORRUPTIONS as CURE
from probebench.plugins.corruptions.imagenet_c import CORRUPTIONS as IMAGENET_C


@pytest.mark.parametrize("cls", CURE, ids=lambda c: c.name)
def test_cure_on_1000_mnist_images(benchmark, cls):
    images = torch.rand(1000, 1, 28, 28)
    benchmark(lambda: cls()(images, 3, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("cls", IMAGENET_C, ids=lambda c: c.name)
def test_imagenet_c_on_20_cifar_images(benchmark, cls):
    images = torch.rand(20, 3, 32, 32)
    benchmark.pedantic(lambda: cls()(images, 3, torch.Generator().manual_seed(0)), rounds=3, iterations=1)
