"""Torch code of the diversity acquirer (imported only when it runs)."""

from __future__ import annotations

import torch


def last_linear(model: torch.nn.Module) -> torch.nn.Module:
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError("the classifier has no nn.Linear layer; give coreset a 'layer' option")
    return linears[-1]


@torch.no_grad()
def embed(ctx, images: torch.Tensor, layer: str | None) -> torch.Tensor:
    """Features [N, D] on the CPU: the output of module ``layer``, or the input of the last linear layer."""
    if layer is not None:
        return ctx.forward(images, (layer,))[1][layer].flatten(1).float()
    captured: list[torch.Tensor] = []
    handle = last_linear(ctx.classifier).register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    try:
        ctx.forward(images)
    finally:
        handle.remove()
    return torch.cat([c.detach().cpu() for c in captured]).flatten(1).float()


def k_center_greedy(pool: torch.Tensor, labelled: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Indices of ``k`` pool rows chosen greedily to minimise the largest
    distance from any pool row to its nearest labelled-or-chosen row."""
    nearest = torch.full((len(pool),), float("inf"))
    for start in range(0, len(labelled), chunk):
        nearest = torch.minimum(nearest, torch.cdist(pool, labelled[start : start + chunk]).min(dim=1).values)
    chosen = []
    for _ in range(min(k, len(pool))):
        pick = int(torch.argmax(nearest))
        chosen.append(pick)
        nearest = torch.minimum(nearest, torch.cdist(pool, pool[pick : pick + 1]).squeeze(1))
        nearest[pick] = -1.0  # never again
    return torch.tensor(chosen, dtype=torch.long)
