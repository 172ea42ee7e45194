"""ODIN (Liang, Li & Srikant, ICLR 2018): temperature-scaled softmax after a
small input perturbation that raises the predicted class's softmax score.
Needs one backward and one extra forward pass per batch."""

from __future__ import annotations

from typing import Any

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


def odin_confidence(model: Any, images: Any, temperature: float, epsilon: float, batch_size: int, device: Any) -> Any:
    """max_c softmax(f(x~) / T)_c with x~ = x - epsilon * sign(grad_x -log max_c softmax(f(x) / T)_c),
    batched; a CPU tensor [N]."""
    import torch

    out = []
    for lo in range(0, len(images), batch_size):
        x = images[lo : lo + batch_size].to(device).requires_grad_(True)
        loss = -(model(x) / temperature).log_softmax(dim=1).max(dim=1).values.sum()
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            perturbed = x.detach() - epsilon * grad.sign()
            out.append((model(perturbed) / temperature).softmax(dim=1).max(dim=1).values.cpu())
    return torch.cat(out) if out else torch.zeros(0)


class ODIN:
    """ODIN (Liang et al., 2018): the maximum softmax probability at temperature
    ``temperature`` of the input moved by ``epsilon`` along the sign of the
    gradient that increases it (inputs are not clipped, as in the paper).
    Defaults are the paper's (T = 1000, epsilon = 0.0014); with epsilon = 0
    and T = 1 it is MSP. Higher = more confident."""

    name = "odin"
    version = "1"
    reference = (
        "Liang, Li & Srikant, Enhancing the Reliability of Out-of-distribution Image Detection "
        "in Neural Networks, ICLR 2018"
    )
    option_help = {"temperature": "softmax temperature T (> 0)", "epsilon": "perturbation size (>= 0)"}

    def __init__(self, temperature: float = 1000.0, epsilon: float = 0.0014):
        if not temperature > 0 or not epsilon >= 0:
            raise UserError(f"odin: temperature must be > 0 and epsilon >= 0, got {temperature} and {epsilon}")
        self.temperature, self.epsilon = float(temperature), float(epsilon)

    def score(self, ctx, batch):
        return odin_confidence(ctx.classifier, batch.images, self.temperature, self.epsilon, ctx.batch_size, ctx.device)


@hookimpl
def register_scorers():
    return [ODIN]
