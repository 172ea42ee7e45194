"""Batched forward passes that also capture hidden activations by module name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import torch

from probebench.errors import UserError, suggest

if TYPE_CHECKING:
    from probebench.pipeline.context import Context


def layer_names(model: torch.nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def require_python_modules(model: torch.nn.Module, what: str) -> None:
    """A one-line error when ``model`` is TorchScript: its submodules run as
    compiled code, so forward hooks never fire and layers cannot be cut out."""
    if isinstance(model, torch.jit.ScriptModule):
        raise UserError(
            f"{what} needs the model's layers, which a TorchScript model does not expose to hooks; "
            "load a state_dict with arch, or a torch.export .pt2 file, instead"
        )


def resolve_layer(model: torch.nn.Module, layer: str) -> torch.nn.Module:
    """The submodule called ``layer``; an unknown name lists the valid ones."""
    require_python_modules(model, f"layer {layer!r}")
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = layer_names(model)
        raise UserError(
            f"layer {layer!r} not found in {type(model).__name__}{suggest(layer, names)}; "
            f"valid layers: {', '.join(names)} (`probebench layers` shows their shapes)"
        ) from None


@torch.no_grad()
def forward(
    model: torch.nn.Module,
    images: torch.Tensor,
    layers: tuple[str, ...] = (),
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits [N, K] and flattened features [N, D] at each of ``layers``, on the CPU,
    from one pass over ``images`` in batches."""
    modules = {layer: resolve_layer(model, layer) for layer in layers}
    captured: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, layer=layer: captured[layer].append(out.flatten(1).cpu()))
        for layer, module in modules.items()
    ]
    logits = []
    try:
        model.eval()
        for start in range(0, len(images), batch_size):
            logits.append(model(images[start : start + batch_size].to(device)).cpu())
    finally:
        for handle in handles:
            handle.remove()
    empty = torch.empty(0)
    return (torch.cat(logits) if logits else empty), {
        layer: torch.cat(parts) if parts else empty for layer, parts in captured.items()
    }


def check_features(payload: dict[str, Any]) -> None:
    """Cached logits or features: a float matrix [N, D], as the forward pass returns; else a ValueError."""
    features = payload["features"]
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or not features.is_floating_point():
        raise ValueError("features are not a float matrix [N, D]")


LOGITS = "<logits>"  # the key the logits are cached under beside the named layers


def cached_forward(
    ctx: Context,
    images: torch.Tensor | Callable[[], torch.Tensor],
    layers: tuple[str, ...],
    where: dict[str, Any],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Like ``ctx.forward`` but each output (the logits and every layer) is an
    artifact of stage ``features``, keyed by the classifier (``ctx.artifact``
    adds its key), the layer and ``where`` — a plain description of which
    images these are, e.g. ``{"split": "test", "corruption": "noise",
    "options": {}, "severity": 3}``. ``where`` must determine ``images`` given
    the classifier's key (which fixes dataset, options and seed): it is the
    caller's promise, not checked. At most one forward pass, and only when
    something is missing; it then computes every requested output at once.
    ``images`` may be a function returning them, called only for that pass."""
    computed: dict[str, torch.Tensor] = {}

    def build(name: str) -> dict:
        if not computed:
            logits, features = ctx.forward(images() if callable(images) else images, tuple(layers))
            computed.update(features)
            computed[LOGITS] = logits
        return {"features": computed[name].contiguous()}

    outputs = {}
    for name in (LOGITS, *layers):
        if name != LOGITS:
            resolve_layer(ctx.classifier, name)  # a typo fails before anything is cached
        outputs[name] = ctx.artifact("features", [name, where], partial(build, name), check_features)["features"]
    logits = outputs.pop(LOGITS)
    return logits, outputs
