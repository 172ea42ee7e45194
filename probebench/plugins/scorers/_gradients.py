"""The torch side of ``grad-norm`` and ``gradtrust``: per-sample gradients of a
label-free loss w.r.t. one layer's parameters, with ``torch.func``
(``functional_call`` + ``vmap`` + ``grad``), never a Python loop over samples.

The model is cut just before the chosen layer (``_graph.split_before``): the
trunk runs once, batched and without autograd (its output is shared by every
gradient scorer of the batch), and only the tail (the layer and what follows
it; for the last layer, the layer alone) is differentiated per sample, in
float64 so that confident samples' tiny gradients do not underflow.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.export import UnflattenedModule
from torch.func import functional_call, grad, vmap

from probebench.errors import UserError
from probebench.plugins.scorers._graph import Split, identity_split, per_batch, run_trunk, split_before, trace

# elements of per-sample gradients held at once (float64: 8 bytes each)
_CHUNK_ELEMENTS = 1 << 22
_TINY = 1e-300


@dataclass
class GradPlan:
    """Where to take gradients: ``layer`` (a module name of the classifier), the
    split before it, and a float64 copy of the tail."""

    layer: str
    split: Split
    tail: nn.Module
    num_classes: int

    def parameter(self, name: str) -> torch.Tensor | None:
        return dict(self.tail.named_parameters()).get(f"{self.layer}.{name}")


def last_linear(model: nn.Module, num_classes: int) -> str:
    """The name of the last ``nn.Linear`` with ``num_classes`` outputs, in
    execution order when the model can be traced, else in registration order."""
    graph_module = trace(model)
    if graph_module is not None:
        names = [n.target for n in graph_module.graph.nodes if n.op == "call_module"]
    else:
        names = [name for name, _ in model.named_modules()]
    heads = [
        n
        for n in names
        if isinstance(model.get_submodule(n), nn.Linear) and model.get_submodule(n).out_features == num_classes
    ]
    if not heads:
        raise UserError(
            f"no nn.Linear layer with {num_classes} outputs in {type(model).__name__}; "
            "name the layer to differentiate with the scorer's 'layer' option"
        )
    return heads[-1]


def plan(model: nn.Module, layer: str | None, num_classes: int, probe: torch.Tensor | None = None) -> GradPlan:
    """The gradient plan for ``layer`` (default: the last linear layer)."""
    from probebench.pipeline.features import require_python_modules, resolve_layer

    require_python_modules(model, "a gradient scorer")
    if isinstance(model, UnflattenedModule):
        raise UserError(
            "a gradient scorer differentiates the model's torch.nn layers, which a torch.export model replaces "
            "by graph code; load a state_dict with arch instead"
        )
    name = layer or last_linear(model, num_classes)
    module = resolve_layer(model, name)
    if not isinstance(getattr(module, "weight", None), torch.Tensor):
        raise UserError(
            f"layer {name!r} ({type(module).__name__}) has no weight to differentiate; choose a Linear or Conv layer"
        )
    split = split_before(model, lambda n, _m: n == name, probe) or identity_split(model)
    tail = copy.deepcopy(split.tail).double().eval()
    for p in tail.parameters():
        p.requires_grad_(False)
    return GradPlan(name, split, tail, num_classes)


def hidden(ctx, batch, grad_plan: GradPlan) -> torch.Tensor:
    """The input of the plan's tail for ``batch``, in float64; shared by every
    gradient scorer that cuts at the same layer."""

    def build() -> torch.Tensor:
        if not grad_plan.split.traced:
            return batch.images.double()
        return run_trunk(grad_plan.split, batch.images, ctx.batch_size, ctx.device).double()

    return per_batch(batch, ("trunk64", grad_plan.split.cut or "images"), build)


# -- label-free losses of one sample's logits z [C] and target t ---------------
def mse_uniform(z: torch.Tensor, _t: torch.Tensor) -> torch.Tensor:
    """GradTrust's public demo: MSE between the logits and the uniform 1/C."""
    return F.mse_loss(z, torch.full_like(z, 1.0 / z.shape[-1]))


def cross_entropy(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits against class ``t`` (an int tensor)."""
    return -torch.gather(z.log_softmax(dim=-1), 0, t.reshape(1)).squeeze(0)


def bce_all_ones(z: torch.Tensor, _t: torch.Tensor) -> torch.Tensor:
    """Gradient uncertainty's confounding label: BCE of sigmoid(z) against all ones."""
    return F.binary_cross_entropy_with_logits(z, torch.ones_like(z), reduction="sum")


# -- per-sample gradients -----------------------------------------------------
def per_sample_grads(
    grad_plan: GradPlan,
    hidden: torch.Tensor,
    loss: Callable,
    targets: torch.Tensor,
    names: tuple[str, ...] = ("weight",),
) -> dict[str, torch.Tensor]:
    """Gradients of ``loss(tail(hidden_i), target)`` w.r.t. the layer's
    parameters ``names``, for every sample i: [N, *param] for targets [N], or
    [N, K, *param] for targets [N, K] (one gradient per target)."""
    tail, layer = grad_plan.tail, grad_plan.layer
    params = {k: v.detach() for k, v in tail.named_parameters()}
    buffers = {k: v.detach() for k, v in tail.named_buffers()}
    wrt = {n: params[f"{layer}.{n}"] for n in names}

    def sample_loss(weights: dict, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        current = {**params, **{f"{layer}.{n}": w for n, w in weights.items()}}
        out = functional_call(tail, (current, buffers), (h.unsqueeze(0),))
        return loss(out.squeeze(0), t)

    sample_grad = grad(sample_loss)
    if targets.dim() == 2:  # several targets per sample: an inner vmap over them
        sample_grad = vmap(sample_grad, in_dims=(None, None, 0))
    return vmap(sample_grad, in_dims=(None, 0, 0))(wrt, hidden, targets)


def chunked(
    grad_plan: GradPlan,
    hidden: torch.Tensor,
    loss: Callable,
    targets: torch.Tensor,
    names: tuple[str, ...],
    reduce: Callable[[dict], torch.Tensor],
) -> torch.Tensor:
    """``reduce`` of the per-sample gradients, computed over chunks of samples so
    that at most ~``_CHUNK_ELEMENTS`` gradient entries exist at once."""
    per_sample = sum(grad_plan.parameter(n).numel() for n in names)
    per_sample *= targets.shape[1] if targets.dim() == 2 else 1
    size = max(1, _CHUNK_ELEMENTS // per_sample)
    parts = [
        reduce(per_sample_grads(grad_plan, hidden[s : s + size], loss, targets[s : s + size], names))
        for s in range(0, len(hidden), size)
    ]
    return torch.cat(parts) if parts else hidden.new_zeros(0)


@torch.no_grad()
def tail_logits(grad_plan: GradPlan, hidden: torch.Tensor) -> torch.Tensor:
    return grad_plan.tail(hidden)


def _row_energy(gradient: torch.Tensor) -> torch.Tensor:
    """v_r = var_j(G[r, j]^2) for each row r (output unit) of a weight gradient [N, R, ...]."""
    return gradient.flatten(2).pow(2).var(dim=2)


def demo_trust(grad_plan: GradPlan, hidden: torch.Tensor) -> torch.Tensor:
    """GradTrust as in its public demo: one gradient of MSE(z, 1/C) w.r.t. the
    layer's weight G; v_r = var_j(G[r,j]^2); trust = max_r v_r / mean_r v_r."""

    def reduce(grads: dict) -> torch.Tensor:
        energy = _row_energy(grads["weight"])
        return energy.max(dim=1).values / energy.mean(dim=1).clamp_min(_TINY)

    dummy = torch.zeros(len(hidden), dtype=torch.long)
    return chunked(grad_plan, hidden, mse_uniform, dummy, ("weight",), reduce)


def demo_trust_closed_form(logits: torch.Tensor) -> torch.Tensor:
    """The demo's trust at a final linear layer, from the logits alone: with
    G[c, j] = (2/C)(z_c - 1/C) h_j, v_c is proportional to (z_c - 1/C)^4, so
    trust = max_c (z_c - 1/C)^4 / mean_c (z_c - 1/C)^4."""
    fourth = (logits - 1.0 / logits.shape[-1]).pow(4)
    return fourth.max(dim=-1).values / fourth.mean(dim=-1)


def counterfactual_trust(grad_plan: GradPlan, hidden: torch.Tensor, k: int) -> torch.Tensor:
    """GradTrust's counterfactual form, as a log ratio oriented higher = more confident:

        score = log( mean_{q in top-k counterfactuals} Var(G_q) / Var(G_yhat) )

    where G_c is the gradient of cross-entropy(z, c) w.r.t. the layer's weight,
    Var is the variance over all its entries, yhat is the predicted class and
    the counterfactuals are the next k classes by logit. (The paper's ratio
    Var(G_yhat) / mean Var(G_q) grows with uncertainty; this is minus its log.)

    When the layer is the classifier's last (a Linear whose output is the
    logits), the variances come from their closed form
    (``counterfactual_variances``) at the cost of the tail's forward pass;
    otherwise from per-sample gradients (``counterfactual_variances_autodiff``,
    also the reference a test holds the closed form to)."""
    if not 1 <= k < grad_plan.num_classes:
        raise UserError(f"gradtrust: k must lie in 1..{grad_plan.num_classes - 1} (classes - 1), got {k}")
    logits = tail_logits(grad_plan, hidden)
    targets = logits.topk(k + 1, dim=1).indices  # [N, k+1], predicted first
    if is_last_linear(grad_plan):
        variance = counterfactual_variances(logits, hidden, targets)
    else:
        variance = counterfactual_variances_autodiff(grad_plan, hidden, targets)
    return variance[:, 1:].mean(dim=1).clamp_min(_TINY).log() - variance[:, 0].clamp_min(_TINY).log()


def is_last_linear(grad_plan: GradPlan) -> bool:
    """Whether the plan's tail is its layer alone, an ``nn.Linear`` whose output
    is the model's output (the logits)."""
    if not grad_plan.split.traced or not isinstance(grad_plan.tail, fx.GraphModule):
        return False
    nodes = [n for n in grad_plan.tail.graph.nodes if n.op not in ("placeholder", "output")]
    if len(nodes) != 1 or nodes[0].op != "call_module" or nodes[0].target != grad_plan.layer:
        return False
    output = next(n for n in grad_plan.tail.graph.nodes if n.op == "output")
    return output.args[0] is nodes[0] and isinstance(grad_plan.tail.get_submodule(grad_plan.layer), nn.Linear)


def counterfactual_variances(logits: torch.Tensor, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Var over the entries of G_c = (p - e_c) h^T, the per-sample gradient of
    cross-entropy(z, c) w.r.t. a last linear layer's weight [C, D], for each
    target c in ``targets`` [N, K]: [N, K].

    The entries' mean is sum_c'(p - e_c)_c' * sum_j h_j / (C D) = 0, since
    p sums to 1; so the (unbiased) variance is ||p - e_c||^2 ||h||^2 / (C D - 1).
    ||p - e_c||^2 = (sum_{j != c} p_j)^2 + sum_{j != c} p_j^2 is summed without
    forming 1 - p_c, which keeps confident samples' distances exact."""
    probs = logits.softmax(dim=1)
    others = probs.unsqueeze(1).expand(-1, targets.shape[1], -1).scatter(2, targets.unsqueeze(2), 0.0)
    distance = others.sum(dim=2).pow(2) + others.pow(2).sum(dim=2)  # [N, K]
    entries = logits.shape[1] * hidden.flatten(1).shape[1]
    return distance * hidden.flatten(1).pow(2).sum(dim=1, keepdim=True) / (entries - 1)


def counterfactual_variances_autodiff(grad_plan: GradPlan, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Var over the entries of each per-sample weight gradient of
    cross-entropy(tail(h), c), for each target c in ``targets`` [N, K]: [N, K],
    by torch.func (any layer)."""

    def reduce(grads: dict) -> torch.Tensor:
        return grads["weight"].flatten(2).var(dim=2)

    if len(hidden) == 0:
        return hidden.new_zeros(targets.shape)
    return chunked(grad_plan, hidden, cross_entropy, targets, ("weight",), reduce)


def grad_norm(grad_plan: GradPlan, hidden: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm of the gradient of BCE(sigmoid(z), all ones) w.r.t. the
    layer's weight and bias (large = uncertain)."""
    names = tuple(n for n in ("weight", "bias") if grad_plan.parameter(n) is not None)

    def reduce(grads: dict) -> torch.Tensor:
        return torch.stack([g.flatten(1).pow(2).sum(dim=1) for g in grads.values()]).sum(dim=0).sqrt()

    dummy = torch.zeros(len(hidden), dtype=torch.long)
    return chunked(grad_plan, hidden, bce_all_ones, dummy, names, reduce)


def per_sample_loop(
    model: nn.Module, layer: str, images: torch.Tensor, loss: Callable, targets: torch.Tensor
) -> torch.Tensor:
    """Reference for tests and benchmarks, never used by the scorers: the weight
    gradient of ``loss(model(x_i), t)`` for each image, one forward and one
    backward per (sample, target) in a Python loop. Returns [N, *weight] for
    targets [N], [N, K, *weight] for targets [N, K]."""
    weight = model.get_submodule(layer).weight
    model.eval()
    grads = []
    for image, target in zip(images, targets):
        logits = model(image.unsqueeze(0)).squeeze(0)
        several = target.reshape(-1)
        per_target = [torch.autograd.grad(loss(logits, t), weight, retain_graph=True)[0] for t in several]
        grads.append(torch.stack(per_target) if target.dim() else per_target[0])
    return torch.stack(grads)
