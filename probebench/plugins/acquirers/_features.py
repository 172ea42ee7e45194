"""Torch code of the diversity acquirers, coreset and badge (imported only when they run)."""

from __future__ import annotations

import torch


def last_linear(model: torch.nn.Module) -> torch.nn.Module:
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError("the classifier has no nn.Linear layer; give coreset a 'layer' option")
    return linears[-1]


def embed(ctx, images: torch.Tensor, layer: str | None) -> torch.Tensor:
    """Features [N, D] on the CPU: the output of module ``layer``, or the input of the last linear layer."""
    return embed_and_logits(ctx, images, layer)[0]


@torch.no_grad()
def embed_and_logits(ctx, images: torch.Tensor, layer: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features as ``embed`` has them, logits [N, C]) from one forward pass."""
    if layer is not None:
        logits, features = ctx.forward(images, (layer,))
        return features[layer].flatten(1).float(), logits.float()
    captured: list[torch.Tensor] = []
    handle = last_linear(ctx.classifier).register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    try:
        logits = ctx.forward(images)[0]
    finally:
        handle.remove()
    return torch.cat([c.detach().cpu() for c in captured]).flatten(1).float(), logits.float()


def gradient_embedding(features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """BADGE's embedding [N, C*D]: the gradient of the cross-entropy with respect
    to the last linear layer's weights, taking the predicted class as the label,
    in closed form (softmax - onehot(argmax)) outer features (its sign flipped,
    which changes no distance)."""
    probabilities = logits.softmax(dim=1)
    scale = -probabilities
    scale[torch.arange(len(logits)), logits.argmax(dim=1)] += 1.0
    return (scale.unsqueeze(2) * features.unsqueeze(1)).flatten(1)


def kmeans_pp_seeds(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``k`` distinct rows chosen by k-means++ seeding: the row of
    largest norm first (as BADGE's reference code does), then each next row
    with probability proportional to its squared distance to the nearest row
    chosen so far (uniformly among the rest when every distance is zero)."""
    points = points.double()
    norms = (points * points).sum(dim=1)
    k = min(k, len(points))
    chosen = [int(torch.argmax(norms))] if k else []
    nearest = torch.full((len(points),), float("inf"), dtype=torch.float64)
    taken = torch.zeros(len(points), dtype=torch.bool)
    while chosen and len(chosen) < k:
        last = chosen[-1]
        taken[last] = True
        distance = (norms + norms[last] - 2.0 * (points @ points[last])).clamp_min(0.0)
        nearest = torch.minimum(nearest, distance)
        weights = torch.where(taken, 0.0, nearest)
        if not bool((weights > 0).any()):
            weights = (~taken).double()
        chosen.append(int(torch.multinomial(weights, 1, generator=generator)))
    return torch.tensor(chosen, dtype=torch.long)


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
