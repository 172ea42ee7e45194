"""``cf-gan``: a classifier that is also a GAN discriminator (arXiv 2310.00761,
generalised from two classes to C): C + 1 outputs (the classes and "fake"),
trained jointly with a UNet generator G(x, target class) of counterfactuals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probebench.errors import UserError
from probebench.hookspecs import hookimpl

# where G's class loss comes from (kept here, not in the torch module, so options validate without torch)
CLASS_SOURCES = ("frozen", "discriminator")
UPSAMPLES = ("nearest", "transpose")
EDITS = ("residual", "masked")


class CFGAN:
    """Discriminator-classifier D: the ``cnn`` network with C + 1 outputs (its
    layers keep the cnn's names, e.g. ``fc_layer.4``); the pipeline sees the
    logits of the C classes. G: a two-level UNet conditioned on the target
    class (one-hot channels) that edits x residually, optionally through a
    learnt mask (``edit``), upsampling by nearest neighbour + conv (image
    sides divisible by 4, e.g. 28 or 32).

    Trains itself (the ``SelfTraining`` capability) with StarGAN's recipe:
    ``warmup_epochs`` of D's classifier on real images, then per batch one D
    step (class cross-entropy on real images only; hinge loss on D's realness
    log(p_real / p_fake), real images up, G's counterfactuals down) and one G
    step (-realness of its counterfactuals, a class loss toward the target,
    a cycle-consistent L1 of G(G(x, t), y) to x, an identity L1 of G(x, y) to
    x, the L1 sparsity of the edit G(x, t) - x, and with ``edit = "masked"``
    an L1 on the mask). Version 4 drops version 3's class-mean input channel
    (``prototype``), with which G drew a class template whatever x was, and
    weighs identity 10 and sparsity 5 (version 3: 1 and none). Version 5
    makes the cycle, identity and sparsity penalties smooth L1 (Huber,
    ``penalty_beta`` 0.05): plain L1 pulls any edit back with a gradient of
    constant size, which held version 4's G at the identity on seeds 2 and
    3 of 0-4. G's class
    loss comes from D as it trains (``class_source = "discriminator"``, the
    paper's joint training) or from a frozen copy of D taken after the
    warm-up (``"frozen"``). Saves loss curves, a counterfactual grid and a
    saliency grid |x - G(x, c)| into the run folder.
    """

    name = "cf-gan"
    version = "5"
    trains_itself = True
    option_help = {
        "epochs": "training epochs, the warm-up included (then one D step and one G step per batch)",
        "warmup_epochs": "first epochs that train D's classifier on real images only",
        "warmup_lr": "learning rate of D's Adam during the warm-up",
        "lr": "learning rate of both Adam optimisers after the warm-up (betas 0.5, 0.999)",
        "batch_size": "training batch size",
        "class_weight": "weight of G's cross-entropy of D's class logits on G(x, t) toward t",
        "cycle_weight": "weight of the cycle-consistent L1 loss |G(G(x,t),y) - x|",
        "identity_weight": "weight of the identity L1 loss |G(x,y) - x| (no change toward x's own class)",
        "class_source": "where G's class loss comes from: 'frozen' (a copy of D after the warm-up) or 'discriminator' (D as it trains, the default)",
        "dropout": "dropout probability in D's fc_layer",
        "width": "channels of D's first conv layer (the second has twice as many)",
        "unet_width": "channels of G's first UNet level (doubling per level)",
        "sparsity_weight": "weight of the L1 sparsity loss |G(x,t) - x| (the edit's size; larger keeps more of x)",
        "edit": "'residual' (x + 2 tanh(Δ)) or 'masked' (x + m 2 tanh(Δ), a learnt mask m in (0, 1), GANimation's)",
        "mask_weight": "weight of the L1 loss on the mask m (edit = 'masked' only)",
        "upsample": "G's upsampling: 'nearest' (nearest neighbour + 3x3 conv) or 'transpose' (version 3's transposed conv)",
        "prototype": "G also sees the target class's mean training image (version 3; lets G paste a class template)",
        "penalty_ramp": "G steps over which the cycle, identity, sparsity and mask weights rise linearly from 0 to their values (0: no ramp), so G leaves the identity it starts as before they pull it back",
        "penalty_beta": "Huber's beta of the cycle, identity and sparsity losses (0: plain L1, whose constant gradient holds G at the identity; > 0: smooth L1, quadratic within beta of no change)",
    }

    def __init__(
        self,
        epochs: int = 4,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-3,
        lr: float = 1e-4,
        batch_size: int = 32,
        class_weight: float = 1.0,
        cycle_weight: float = 10.0,
        identity_weight: float = 10.0,
        class_source: str = "discriminator",
        dropout: float = 0.3,
        width: int = 32,
        unet_width: int = 16,
        sparsity_weight: float = 5.0,
        edit: str = "residual",
        mask_weight: float = 0.0,
        upsample: str = "nearest",
        prototype: bool = False,
        penalty_ramp: int = 0,
        penalty_beta: float = 0.05,
    ):
        if epochs < 1 or batch_size < 1 or width < 1 or unet_width < 1:
            raise UserError("cf-gan: epochs, batch_size, width and unet_width must be positive")
        if not 0 <= warmup_epochs < epochs:
            raise UserError(f"cf-gan: warmup_epochs must lie in [0, epochs) = [0, {epochs}), got {warmup_epochs}")
        if class_source not in CLASS_SOURCES:
            raise UserError(f"cf-gan: class_source must be one of {', '.join(CLASS_SOURCES)}, got {class_source!r}")
        if upsample not in UPSAMPLES:
            raise UserError(f"cf-gan: upsample must be one of {', '.join(UPSAMPLES)}, got {upsample!r}")
        if edit not in EDITS:
            raise UserError(f"cf-gan: edit must be one of {', '.join(EDITS)}, got {edit!r}")
        if mask_weight and edit != "masked":
            raise UserError(f"cf-gan: mask_weight needs edit = 'masked' (there is no mask with edit = {edit!r})")
        if not isinstance(prototype, bool):
            raise UserError(f"cf-gan: prototype must be true or false, got {prototype!r}")
        weights = (class_weight, cycle_weight, identity_weight, sparsity_weight, mask_weight)
        if min(lr, warmup_lr) <= 0 or min(weights) < 0:
            raise UserError(
                "cf-gan: lr and warmup_lr must be positive; class_weight, cycle_weight, identity_weight,"
                " sparsity_weight and mask_weight not negative"
            )
        if isinstance(penalty_ramp, bool) or not isinstance(penalty_ramp, int) or penalty_ramp < 0:
            raise UserError(f"cf-gan: penalty_ramp must be a whole number of G steps >= 0, got {penalty_ramp!r}")
        if not 0 <= penalty_beta < 1:
            raise UserError(f"cf-gan: penalty_beta must lie in [0, 1) (0: plain L1), got {penalty_beta}")
        if not 0 <= dropout < 1:
            raise UserError(f"cf-gan: dropout must lie in [0, 1), got {dropout}")
        self.epochs, self.warmup_epochs, self.warmup_lr, self.lr = epochs, warmup_epochs, warmup_lr, lr
        self.batch_size, self.class_source = batch_size, class_source
        self.class_weight, self.cycle_weight, self.identity_weight = class_weight, cycle_weight, identity_weight
        self.dropout, self.width, self.unet_width = dropout, width, unet_width
        self.sparsity_weight, self.edit, self.mask_weight = sparsity_weight, edit, mask_weight
        self.upsample, self.prototype = upsample, prototype
        self.penalty_ramp, self.penalty_beta = penalty_ramp, penalty_beta

    def build(self, num_classes: int, shape: tuple[int, int, int]):
        from probebench.plugins.classifiers._cfgan_net import CFGANNet

        if num_classes < 2:
            raise UserError(f"cf-gan needs at least 2 classes, got {num_classes}")
        return CFGANNet(
            num_classes, shape, self.dropout, self.width, self.unet_width, self.prototype, self.upsample, self.edit
        )

    def fit(self, model, images, labels, seed: int, device, label: str) -> dict[str, list[float]]:
        import math

        from probebench.console import task
        from probebench.plugins.classifiers._cfgan_net import GANRecipe, fit

        recipe = GANRecipe(
            self.epochs,
            self.warmup_epochs,
            self.warmup_lr,
            self.lr,
            self.batch_size,
            self.class_weight,
            self.cycle_weight,
            self.identity_weight,
            self.class_source,
            self.sparsity_weight,
            self.mask_weight,
            self.penalty_ramp,
            self.penalty_beta,
        )
        with task(f"train {label}", self.epochs * math.ceil(len(images) / self.batch_size)) as advance:
            return fit(model, images, labels, recipe, seed, device, advance)

    def save_figures(
        self, model: Any, history: dict[str, list[float]], images: Any, labels: Any, out: Path, stem: str
    ) -> None:
        """``<stem>-losses.png`` (the loss curves), ``<stem>-counterfactuals.png``
        (two test images of each class, rows by class, each followed by G(x, c)
        for every class c) and ``<stem>-saliency.png`` (the same rows, each
        image followed by the paper's saliency |x - G(x, c)| for every c,
        scaled per tile to its largest value: white is the most changed pixel)."""
        import torch

        from probebench.report.grids import image_grid
        from probebench.report.plots import save_loss_curves

        save_loss_curves(history, out / f"{stem}-losses.png", "cf-gan training losses")

        num_classes = model.num_classes
        device = next(model.parameters()).device
        picks = torch.cat([torch.nonzero(labels == c).flatten()[:2] for c in range(num_classes)])
        x = images[picks].to(device)
        with torch.no_grad():
            rows = [x] + [model.counterfactual(x, torch.full((len(x),), c, device=device)) for c in range(num_classes)]
        grid = torch.stack(rows, dim=1).flatten(0, 1).cpu()  # image, then G(x, 0..C-1), per row
        image_grid(grid, num_classes + 1, out / f"{stem}-counterfactuals.png")
        saliency = [(x - made).abs() for made in rows[1:]]
        saliency = [s / s.flatten(1).amax(dim=1).clamp_min(1e-8)[:, None, None, None] for s in saliency]
        grid = torch.stack([x, *saliency], dim=1).flatten(0, 1).cpu()  # image, then |x - G(x, c)|, per row
        image_grid(grid, num_classes + 1, out / f"{stem}-saliency.png")


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
