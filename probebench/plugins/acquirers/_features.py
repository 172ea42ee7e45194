"""Torch code of the diversity acquirers, coreset and badge (imported only when they run)."""

from __future__ import annotations

from collections.abc import Callable

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


def gradient_scale(logits: torch.Tensor) -> torch.Tensor:
    """BADGE's embedding of image i is the gradient of the cross-entropy with
    respect to the last linear layer's weights, taking the predicted class as
    the label: (softmax - onehot(argmax))_i outer features_i. This returns the
    first factor [N, C] with its sign flipped (which changes no distance);
    ``badge_seeds`` never forms the [N, C*D] products."""
    scale = -logits.softmax(dim=1)
    scale[torch.arange(len(logits)), logits.argmax(dim=1)] += 1.0
    return scale


def badge_seeds(features: torch.Tensor, logits: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """``kmeans_pp_seeds`` on the gradient embeddings, through their inner
    products (a x f) . (b x g) = (a . b)(f . g): C + D numbers per image and
    step instead of C * D."""
    scale, features = gradient_scale(logits).double(), features.double()
    norms = (scale * scale).sum(dim=1) * (features * features).sum(dim=1)
    return kmeans_pp_seeds(norms, lambda i: (scale @ scale[i]) * (features @ features[i]), k, generator)


def kmeans_pp_seeds(
    norms: torch.Tensor, inner: Callable[[int], torch.Tensor], k: int, generator: torch.Generator
) -> torch.Tensor:
    """Indices of ``k`` distinct points chosen by k-means++ seeding, given
    their squared norms [N] and ``inner(i)``, the inner products [N] of every
    point with point i: the point of largest norm first (as BADGE's reference
    code does), then each next point with probability proportional to its
    squared distance to the nearest point chosen so far (uniformly among the
    rest when every distance is zero)."""
    k = min(k, len(norms))
    chosen = [int(torch.argmax(norms))] if k else []
    nearest = torch.full((len(norms),), float("inf"), dtype=torch.float64)
    taken = torch.zeros(len(norms), dtype=torch.bool)
    while chosen and len(chosen) < k:
        last = chosen[-1]
        taken[last] = True
        nearest = torch.minimum(nearest, (norms + norms[last] - 2.0 * inner(last)).clamp_min(0.0))
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
