"""The torch side of ``mc-dropout``: find the deterministic trunk, then sample
the stochastic tail T times in one batched pass per chunk."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from probebench.errors import UserError
from probebench.plugins.scorers._graph import Split, identity_split, per_batch, run_trunk, split_before

# input elements per call of a traced (cheap) tail
_TAIL_ELEMENTS = 1 << 22


def is_dropout(module: nn.Module) -> bool:
    return isinstance(module, _DropoutNd) and module.p > 0


def dropout_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if is_dropout(m)]


def plan(model: nn.Module, probe: torch.Tensor | None = None) -> Split:
    """Cut ``model`` before its first dropout layer (in execution order); when
    ``torch.fx`` cannot trace the model or no clean cut exists, the whole model
    is the tail (T full passes)."""
    if not dropout_modules(model):
        raise UserError(
            f"mc-dropout: the classifier ({type(model).__name__}) has no dropout layer with p > 0; "
            "use a classifier with dropout (e.g. cnn with dropout = 0.3) or remove mc-dropout from the suite"
        )
    return split_before(model, lambda _name, module: is_dropout(module), probe) or identity_split(model)


@contextmanager
def dropout_sampling(modules: list[nn.Module]) -> Iterator[None]:
    """Only the dropout layers in train mode, restored afterwards."""
    flags = [m.training for m in modules]
    for m in modules:
        m.train()
    try:
        yield
    finally:
        for m, flag in zip(modules, flags):
            m.train(flag)


def _fork_rng(device: torch.device):
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def rows_per_call(split: Split, hidden: torch.Tensor, batch_size: int) -> int:
    """Rows (images x passes) per call of the tail: a traced tail is cheap per
    row, so its calls hold up to ~4M input elements (large matrix products: 4x
    faster here than ``batch_size`` rows); the fallback (the whole model) runs
    ``batch_size`` rows per call, like a plain forward pass."""
    if split.traced and len(hidden):
        return max(batch_size, _TAIL_ELEMENTS // hidden[0].numel())
    return batch_size


@torch.no_grad()
def sample_probs(split: Split, hidden: torch.Tensor, passes: int, rows: int, device, seed: int) -> torch.Tensor:
    """Softmax outputs [T, N, C] of ``passes`` stochastic runs of the tail on the
    trunk outputs ``hidden``. Each chunk of images is repeated T times along the
    batch axis and run at once; the masks are drawn from a generator seeded
    with ``seed``, so the result is deterministic given the seed and ``rows``
    (rows per call, i.e. images per chunk x passes)."""
    tail = split.tail
    modules = dropout_modules(tail)
    tail.eval()
    chunk = max(1, rows // passes)
    outputs = []
    with _fork_rng(torch.device(device)), dropout_sampling(modules):
        torch.manual_seed(seed)
        for start in range(0, len(hidden), chunk):
            part = hidden[start : start + chunk].to(device)
            repeated = part.repeat(passes, *([1] * (part.dim() - 1)))  # [T*B, ...], pass-major
            logits = tail(repeated)
            outputs.append(logits.softmax(dim=-1).view(passes, len(part), -1).cpu())
    return torch.cat(outputs, dim=1)


def batch_samples(ctx, batch, split: Split, passes: int) -> torch.Tensor:
    """The MC-dropout samples of ``batch``, shared by every variant of the scorer."""

    def trunk() -> torch.Tensor:
        if not split.traced:
            return batch.images
        return per_batch(
            batch, ("trunk", split.cut), lambda: run_trunk(split, batch.images, ctx.batch_size, ctx.device)
        )

    def samples() -> torch.Tensor:
        hidden = trunk()
        rows = rows_per_call(split, hidden, ctx.batch_size)
        return sample_probs(split, hidden, passes, rows, ctx.device, ctx.seed)

    return per_batch(batch, ("mc-dropout", split.cut, passes, ctx.seed), samples)
