"""The torch module behind the ``cnn`` classifier (imported only when built)."""

from __future__ import annotations

import torch
from torch import nn

from probebench.errors import UserError


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)``, the same numbers faster on a CPU: torch's kernel for
    channels-first (NCHW) tensors took 14 ms for the cnn's [128, 32, 26, 26]
    activations on one thread, its channels-last kernel 1.4 ms plus 2.7 ms to
    copy the input into that layout. So the input is pooled in a
    channels-last copy and the output (and in training its gradient) comes
    back channels-first: each window's maximum, and its gradient to the first
    largest element, are those of the plain kernel, so a model trains to the
    same bits (tested), in 0.89x the time of a training step of the cnn
    (``tests/benchmarks/test_pool_speed.py``). Under ``torch.func``
    transforms, in TorchScript, on other devices and for other layouts it is
    ``nn.MaxPool2d`` itself. ``torch.fx`` keeps it as one node (``fx_leaf``),
    as it keeps ``nn.MaxPool2d``."""

    fx_leaf = True

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # a TorchScript export of the model: the plain kernel
            return nn.functional.max_pool2d(x, 2)
        return self._pooled(x)

    @torch.jit.unused
    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dim() != 4 or not x.is_contiguous() or _transformed(x):
            return super().forward(x)
        if not (torch.is_grad_enabled() and x.requires_grad):
            return nn.functional.max_pool2d(x.contiguous(memory_format=torch.channels_last), 2).contiguous()
        return _PooledChannelsLast.apply(x)


class _PooledChannelsLast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        pooled, where = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last), [2, 2])
        where = where.contiguous()
        ctx.save_for_backward(x, where)
        return pooled.contiguous()

    @staticmethod
    def backward(ctx, grad):
        x, where = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(), x, [2, 2], [2, 2], [0, 0], [1, 1], False, where
        )


def _transformed(x: torch.Tensor) -> bool:
    """Whether ``x`` is a tensor inside a ``torch.func`` transform (vmap, grad)."""
    return torch._C._functorch.is_functorch_wrapped_tensor(x)


class CNNNet(nn.Module):
    def __init__(self, num_classes: int, shape: tuple[int, int, int], dropout: float = 0.3, width: int = 32):
        super().__init__()
        channels, height, width_px = shape
        side_h, side_w = (height - 2) // 2, (width_px - 2) // 2
        side_h, side_w = (side_h - 2) // 2, (side_w - 2) // 2
        if side_h < 1 or side_w < 1:
            raise UserError(f"cnn needs images of at least 10x10 pixels, got {height}x{width_px}")
        self.conv_layer = nn.Sequential(
            nn.Conv2d(channels, width, 3),
            nn.ReLU(),
            MaxPool2x2(),
            nn.Conv2d(width, 2 * width, 3),
            nn.ReLU(),
            MaxPool2x2(),
        )
        self.fc_layer = nn.Sequential(
            nn.Linear(2 * width * side_h * side_w, 512),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(512, 256),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )

    def forward(self, x):
        return self.fc_layer(self.conv_layer(x).flatten(1))
