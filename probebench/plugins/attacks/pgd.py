"""``pgd``: projected gradient descent under an L-inf budget (Madry et al.,
2018), through torchattacks (the optional extra ``probebench[attacks]``)."""

from __future__ import annotations

import importlib.util
from typing import Any

from probebench.errors import UserError
from probebench.hookspecs import hookimpl

EPSILONS = (0.05, 0.1, 0.15, 0.2, 0.3)


class PGD:
    """Untargeted L-inf PGD with a uniform random start: ``steps`` signed
    gradient steps of size ``step_size`` x epsilon on the cross-entropy of the
    classifier's logits at the true label, each projected back into the
    epsilon ball around the image and into [0, 1]. Severity s attacks with
    ``epsilons[s - 1]`` (images in [0, 1]; the defaults suit MNIST, where
    0.3 is the classic budget). The random start draws from the cell's
    generator, so an attack is deterministic given the run's seed.

    torchattacks' PGD (3.5) implements it; a test holds it to its definition."""

    name = "pgd"
    version = "1"
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
        if importlib.util.find_spec("torchattacks") is None:
            raise UserError("pgd needs torchattacks: pip install 'probebench[attacks]' (or pip install torchattacks)")
        self.epsilons = tuple(float(e) for e in epsilons)
        self.steps, self.step_size, self.random_start = steps, step_size, random_start

    def __call__(self, model: Any, images: Any, labels: Any, severity: int, generator: Any) -> Any:
        import torch
        import torchattacks

        epsilon = self.epsilons[severity - 1]
        attack = torchattacks.PGD(
            model, eps=epsilon, alpha=self.step_size * epsilon, steps=self.steps, random_start=self.random_start
        )
        # torchattacks draws its random start from torch's global generator: seed it from ours, in a fork
        start_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[images.device] if images.device.type == "cuda" else []):
            torch.manual_seed(start_seed)
            return attack(images, labels)


@hookimpl
def register_attacks():
    return [PGD]
