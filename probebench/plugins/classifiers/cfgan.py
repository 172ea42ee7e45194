"""``cf-gan``: a classifier that is also a GAN discriminator (arXiv 2310.00761,
generalised from two classes to C): C + 1 outputs (the classes and "fake"),
trained jointly with a UNet generator G(x, target class) of counterfactuals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


class CFGAN:
    """Discriminator-classifier D: the ``cnn`` network with C + 1 outputs (its
    layers keep the cnn's names, e.g. ``fc_layer.4``); the pipeline sees the
    logits of the C classes. G: a two-level UNet conditioned on the target
    class (image sides divisible by 4, e.g. 28 or 32).

    Trains itself (the ``SelfTraining`` capability): per batch one D step
    (real images toward their class, G's counterfactuals toward "fake") and
    one G step (counterfactuals toward their target class and not fake, a
    cycle-consistent L1 of G(G(x, t), y) to x, a sparsity L1 of G(x, t) to x).
    Saves loss curves and a counterfactual grid per class into the run folder.
    """

    name = "cf-gan"
    version = "1"
    trains_itself = True
    option_help = {
        "epochs": "training epochs (one D step and one G step per batch)",
        "lr": "learning rate of both Adam optimisers (betas 0.5, 0.999)",
        "batch_size": "training batch size",
        "cycle_weight": "weight of the cycle-consistent L1 loss |G(G(x,t),y) - x|",
        "sparsity_weight": "weight of the L1 loss |G(x,t) - x| that keeps counterfactuals close to x",
        "dropout": "dropout probability in D's fc_layer",
        "width": "channels of D's first conv layer (the second has twice as many)",
        "unet_width": "channels of G's first UNet level (doubling per level)",
    }

    def __init__(
        self,
        epochs: int = 8,
        lr: float = 1e-3,
        batch_size: int = 64,
        cycle_weight: float = 10.0,
        sparsity_weight: float = 1.0,
        dropout: float = 0.3,
        width: int = 32,
        unet_width: int = 16,
    ):
        if epochs < 1 or batch_size < 1 or width < 1 or unet_width < 1:
            raise UserError("cf-gan: epochs, batch_size, width and unet_width must be positive")
        if lr <= 0 or cycle_weight < 0 or sparsity_weight < 0:
            raise UserError("cf-gan: lr must be positive, cycle_weight and sparsity_weight not negative")
        if not 0 <= dropout < 1:
            raise UserError(f"cf-gan: dropout must lie in [0, 1), got {dropout}")
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.cycle_weight, self.sparsity_weight = cycle_weight, sparsity_weight
        self.dropout, self.width, self.unet_width = dropout, width, unet_width

    def build(self, num_classes: int, shape: tuple[int, int, int]):
        from probebench.plugins.classifiers._cfgan_net import CFGANNet

        if num_classes < 2:
            raise UserError(f"cf-gan needs at least 2 classes, got {num_classes}")
        return CFGANNet(num_classes, shape, self.dropout, self.width, self.unet_width)

    def fit(self, model, images, labels, seed: int, device, label: str) -> dict[str, list[float]]:
        import math

        from probebench.console import task
        from probebench.plugins.classifiers._cfgan_net import GANRecipe, fit

        recipe = GANRecipe(self.epochs, self.lr, self.batch_size, self.cycle_weight, self.sparsity_weight)
        with task(f"train {label}", self.epochs * math.ceil(len(images) / self.batch_size)) as advance:
            return fit(model, images, labels, recipe, seed, device, advance)

    def save_figures(
        self, model: Any, history: dict[str, list[float]], images: Any, labels: Any, out: Path, stem: str
    ) -> None:
        """``<stem>-losses.png`` (the loss curves) and ``<stem>-counterfactuals.png``:
        two images of each class (rows, by class), each followed by G(x, c) for every class c."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import torch

        from probebench.report.grids import image_grid

        fig, ax = plt.subplots(figsize=(5, 3.2))
        for name, values in history.items():
            ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean loss")
        ax.set_title("cf-gan training losses")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / f"{stem}-losses.png", dpi=100)
        plt.close(fig)

        num_classes = model.num_classes
        device = next(model.parameters()).device
        picks = torch.cat([torch.nonzero(labels == c).flatten()[:2] for c in range(num_classes)])
        x = images[picks].to(device)
        with torch.no_grad():
            rows = [x] + [model.counterfactual(x, torch.full((len(x),), c, device=device)) for c in range(num_classes)]
        grid = torch.stack(rows, dim=1).flatten(0, 1).cpu()  # image, then G(x, 0..C-1), per row
        image_grid(grid, num_classes + 1, out / f"{stem}-counterfactuals.png")


def apply_cfgan(ctx: Any, images: Any, user: str, method: Any) -> Any:
    """``method(model, x)`` on ``ctx.classifier``, a ``cf-gan`` model, batch by
    batch without gradients, concatenated on the CPU; a one-line error naming
    the classifier that ``user`` (e.g. ``scorer p-fake``) needs on any other model."""
    import torch

    model = ctx.classifier
    if not all(callable(getattr(model, attr, None)) for attr in ("p_fake", "counterfactual")):
        raise UserError(
            f"{user} needs the 'cf-gan' classifier (a discriminator with a fake output and a counterfactual "
            f'generator), got a {type(model).__name__}: set classifier = {{ name = "cf-gan" }} or drop {user}'
        )
    with torch.no_grad():
        return torch.cat(
            [
                method(model, images[start : start + ctx.batch_size].to(ctx.device)).cpu()
                for start in range(0, len(images), ctx.batch_size)
            ]
        )


@hookimpl
def register_classifiers():
    return [CFGAN]
