"""Torch helpers shared by the scorers that need more than the logits: cutting a
classifier into a deterministic trunk and a tail with ``torch.fx``, and a
per-batch memo so several scorers (or variants of one) share intermediate
results. Imported only inside scorer methods (it imports torch)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def per_batch(batch, key: Any, build: Callable[[], Any]) -> Any:
    """``build()`` once per (``batch``, ``key``): variants of a scorer (e.g.
    ``mc-dropout:pe`` and ``mc-dropout:mi``) then share one computation. The
    entry goes away with the batch."""
    memo = _MEMO.setdefault(batch, {})
    if key not in memo:
        memo[key] = build()
    return memo[key]


@dataclass
class Split:
    """``model(x) == tail(trunk(x))`` in eval mode. ``traced`` is False when no
    cut could be found and the trunk is the identity (the tail is the model)."""

    trunk: nn.Module
    tail: nn.Module
    cut: str
    traced: bool


class _Tracer(fx.Tracer):
    """``torch.fx``'s tracer, which also keeps as one node each module whose
    class says ``fx_leaf = True`` (as it keeps torch.nn's own layers), e.g.
    the cnn's ``MaxPool2x2``, whose forward picks a kernel by its input's layout."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return getattr(m, "fx_leaf", False) or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule | None:
    try:
        tracer = _Tracer()
        graph = tracer.trace(model)
        return fx.GraphModule(tracer.root, graph, type(model).__name__)
    except Exception:  # data-dependent control flow, unsupported ops: no split
        return None


def split_before(
    model: nn.Module, is_target: Callable[[str, nn.Module], bool], probe: torch.Tensor | None = None
) -> Split | None:
    """Cut ``model`` just before the first module (in execution order) for which
    ``is_target(name, module)`` holds, so that the module and everything after it
    form the tail and everything before it the trunk.

    The graph comes from ``torch.fx``'s tracer (``trace``); the cut is accepted only if
    the tail reads nothing computed in the trunk except the target's input (no
    skip connection crosses it). When ``probe`` images are given, the split must
    also reproduce ``model(probe)``. Returns None when any of this fails."""
    graph_module = trace(model)
    if graph_module is None:
        return None
    nodes = list(graph_module.graph.nodes)
    target = next(
        (n for n in nodes if n.op == "call_module" and is_target(n.target, graph_module.get_submodule(n.target))), None
    )
    if target is None or len(target.all_input_nodes) != 1 or not isinstance(target.args[0], fx.Node):
        return None
    cut = target.args[0]
    position = nodes.index(cut)
    head, rest = nodes[: position + 1], nodes[position + 1 :]
    if sum(n.op == "placeholder" for n in head) != 1 or any(n.op == "placeholder" for n in rest):
        return None
    in_head = set(head)
    for node in rest:
        if any(i in in_head and i is not cut and i.op != "get_attr" for i in node.all_input_nodes):
            return None

    trunk_graph, env = fx.Graph(), {}
    for node in head:
        env[node] = trunk_graph.node_copy(node, lambda n: env[n])
    trunk_graph.output(env[cut])
    trunk = fx.GraphModule(graph_module, trunk_graph)
    trunk.graph.eliminate_dead_code()
    trunk.recompile()

    tail_graph = fx.Graph()
    env = {cut: tail_graph.placeholder("hidden")}
    for node in rest:
        for i in node.all_input_nodes:
            if i not in env:  # a parameter read directly (get_attr) in the trunk
                env[i] = tail_graph.node_copy(i, lambda n: env[n])
        env[node] = tail_graph.node_copy(node, lambda n: env[n])

    split = Split(trunk, fx.GraphModule(graph_module, tail_graph), cut=str(target.target), traced=True)
    if probe is not None and not reproduces(model, split, probe):
        return None
    return split


@torch.no_grad()
def reproduces(model: nn.Module, split: Split, probe: torch.Tensor) -> bool:
    was_training = model.training
    model.eval()
    try:
        expected = model(probe)
        got = split.tail(split.trunk(probe))
    finally:
        model.train(was_training)
    return expected.shape == got.shape and torch.allclose(expected, got, rtol=1e-4, atol=1e-5)


def identity_split(model: nn.Module) -> Split:
    """The fallback: the trunk does nothing and the tail is the whole model."""
    return Split(nn.Identity(), model, cut="", traced=False)


@torch.no_grad()
def run_trunk(split: Split, images: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """The trunk's output for ``images`` in batches, on the CPU (eval mode)."""
    split.trunk.eval()
    parts = [split.trunk(images[s : s + batch_size].to(device)).cpu() for s in range(0, len(images), batch_size)]
    return torch.cat(parts) if parts else images[:0]


def probe_images(ctx, count: int = 4) -> torch.Tensor:
    """A few training images to check a split against the model."""
    return ctx.train_images[:count].to(ctx.device)
