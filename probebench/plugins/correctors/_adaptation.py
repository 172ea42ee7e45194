"""The torch side of ``tta`` and ``tent`` (imported only when one runs)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from probebench.kinds import Correction

NORMALISATION = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)


def shifted(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``images`` moved by (dy, dx) pixels, the uncovered border zero."""
    out = torch.zeros_like(images)
    h, w = images.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def augmented_predictions(ctx, images: torch.Tensor, shift: int) -> Correction:
    """The argmax of the mean softmax over the image and its four shifts."""
    offsets = [(0, 0), (shift, 0), (-shift, 0), (0, shift), (0, -shift)]
    probs = torch.zeros(len(images), ctx.num_classes)
    for dy, dx in offsets:
        probs += ctx.forward(shifted(images, dy, dx))[0].softmax(dim=1)
    steps = torch.zeros(len(images), dtype=torch.long)
    return Correction(
        images.clone(), steps, {"tta_confidence": (probs / len(offsets)).max(dim=1).values}, probs.argmax(dim=1)
    )


def adapted_parameters(model: nn.Module) -> tuple[str, list[nn.Parameter]]:
    """(what adapts, its parameters): the affine parameters of the normalisation
    layers, or, without any, the biases of the Linear layers."""
    norms = [m for m in model.modules() if isinstance(m, NORMALISATION)]
    params = [p for m in norms for p in (getattr(m, "weight", None), getattr(m, "bias", None)) if p is not None]
    if params:
        return "normalisation affine parameters", params
    biases = [m.bias for m in model.modules() if isinstance(m, nn.Linear) and m.bias is not None]
    return "linear biases", biases


def entropy_adapted_predictions(ctx, images: torch.Tensor, lr: float, epochs: int) -> Correction:
    """TENT on a copy of the classifier: minimise the mean prediction entropy of
    each batch of the cell over the adapted parameters, ``epochs`` passes in
    order, then predict every image with the adapted copy."""
    model = copy.deepcopy(ctx.classifier).to(ctx.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    _, params = adapted_parameters(model)
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.Adam(params, lr=lr)
    size = max(1, ctx.batch_size)
    with torch.enable_grad():
        for _ in range(epochs):
            for start in range(0, len(images), size):
                log_probs = model(images[start : start + size].to(ctx.device)).log_softmax(dim=1)
                entropy = -(log_probs.exp() * log_probs).sum(dim=1).mean()
                optimiser.zero_grad(set_to_none=True)
                entropy.backward()
                optimiser.step()
    with torch.no_grad():
        predictions = torch.cat(
            [model(images[s : s + size].to(ctx.device)).argmax(dim=1).cpu() for s in range(0, len(images), size)]
        )
    steps = torch.zeros(len(images), dtype=torch.long)
    n_params = sum(p.numel() for p in params)
    details = {"adapted_parameters": torch.full((len(images),), n_params, dtype=torch.long)}
    return Correction(images.clone(), steps, details, predictions)
