"""``pgd``: projected gradient descent under an L-inf budget (Madry et al., 2018).

A small loop of our own rather than torchattacks: torchattacks 3.5.1 pins
``requests~=2.25.1``, and with it a fresh ``pip install`` of the test extras
(mlflow, ray) did not resolve. The loop is a few lines, batched, and a test
holds it to a PGD written from its definition."""

from __future__ import annotations

from typing import Any

from probebench.errors import UserError
from probebench.hookspecs import hookimpl

EPSILONS = (0.05, 0.1, 0.15, 0.2, 0.3)


class PGD:
    """Untargeted L-inf PGD: a uniform random start in the epsilon ball
    (x + epsilon * (2u - 1), u drawn on the CPU from the cell's generator,
    clipped to [0, 1]), then ``steps`` signed gradient steps of size
    ``step_size`` x epsilon on the cross-entropy of the classifier's logits at
    the true label, each projected back into the epsilon ball around the
    image and into [0, 1]. Severity s attacks with ``epsilons[s - 1]``
    (images in [0, 1]; the defaults suit MNIST, where 0.3 is the classic
    budget). Deterministic given the run's seed; the model's parameters get
    no gradients."""

    name = "pgd"
    version = "2"
    option_help = {
        "epsilons": "L-inf budget for severities 1..5 (five numbers, images in [0, 1])",
        "steps": "gradient steps per image",
        "step_size": "step size as a fraction of epsilon (Madry et al. use 2.5 / steps)",
        "random_start": "start at a uniform random point of the epsilon ball",
    }
    option_ranges = {"steps": "[1, inf)", "step_size": "(0, inf)"}

    def __init__(
        self,
        epsilons: list[float] | tuple[float, ...] = EPSILONS,
        steps: int = 10,
        step_size: float = 0.25,
        random_start: bool = True,
    ):
        if (
            not isinstance(epsilons, list | tuple)
            or len(epsilons) != 5
            or not all(isinstance(e, int | float) and not isinstance(e, bool) and 0 <= e <= 1 for e in epsilons)
        ):
            raise UserError(f"pgd: epsilons must be five numbers in [0, 1] (severities 1..5), got {epsilons!r}")
        self.epsilons = tuple(float(e) for e in epsilons)
        self.steps, self.step_size, self.random_start = steps, step_size, random_start

    def __call__(self, model: Any, images: Any, labels: Any, severity: int, generator: Any) -> Any:
        import torch

        epsilon = self.epsilons[severity - 1]
        images = images.detach()
        adversarial = images.clone()
        if self.random_start:
            noise = torch.rand(images.shape, generator=generator).to(images.device)
            adversarial = (images + epsilon * (2 * noise - 1)).clamp(0, 1)
        for _ in range(self.steps):
            adversarial.requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(adversarial), labels)
            (gradient,) = torch.autograd.grad(loss, adversarial)
            stepped = adversarial.detach() + self.step_size * epsilon * gradient.sign()
            adversarial = (images + (stepped - images).clamp(-epsilon, epsilon)).clamp(0, 1)
        return adversarial.detach()


@hookimpl
def register_attacks():
    return [PGD]
