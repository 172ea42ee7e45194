"""The torch modules behind the ``cf-gan`` classifier (imported only when built):
a discriminator-classifier with C + 1 outputs (the ``cnn`` network, its last
output being "fake") and a small UNet generator G(x, target class), and the
joint training loop."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from probebench.errors import UserError
from probebench.plugins.classifiers._cnn_net import CNNNet


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2)
    )


def clamp_straight_through(x: torch.Tensor) -> torch.Tensor:
    """``x`` clamped to [0, 1] in the forward pass, with the gradient of the
    identity in the backward pass (``torch.clamp`` has none outside the bounds,
    where MNIST's pixels sit)."""
    return x + (x.clamp(0, 1) - x).detach()


def _upsample(cin: int, cout: int, mode: str) -> nn.Module:
    """Doubles the sides: nearest-neighbour upsampling and a 3x3 conv
    (``"nearest"``, no checkerboard) or a 2x2 transposed conv of stride 2
    (``"transpose"``, version 3's, whose uneven overlap left a checkerboard)."""
    if mode == "transpose":
        return nn.ConvTranspose2d(cin, cout, 2, stride=2)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1))


class UNet(nn.Module):
    """A two-level UNet G(x, target) that predicts an edit Δ: it returns
    x + 2 tanh(Δ) (``edit = "residual"``) or x + m 2 tanh(Δ) with a mask
    m = sigmoid(.) in (0, 1) per pixel (``edit = "masked"``, GANimation's
    attention: where m is 0, x passes unchanged), clamped to [0, 1]
    straight-through. The target class enters as one-hot channels at every
    level and, with ``prototype``, also at the input as the class's mean
    training image (``prototypes``, a buffer filled by ``fit`` and saved with
    the model; version 3's way out of a collapse, which let G paste a class
    template whatever x was). The output layer starts at zero, so G starts
    as the identity (for ``"masked"`` m starts at 1/2 and Δ at 0).
    Earlier forms collapsed on mnist-5k: a sigmoid image (all black), x +
    tanh(.) clamped (the identity: no gradient at the bounds) and a sigmoid
    mask over a sigmoid content image (black)."""

    def __init__(
        self,
        num_classes: int,
        shape: tuple[int, int, int],
        base: int = 16,
        prototype: bool = False,
        upsample: str = "nearest",
        edit: str = "residual",
    ):
        super().__init__()
        channels = shape[0]
        self.num_classes, self.prototype, self.edit = num_classes, prototype, edit
        self.register_buffer("prototypes", torch.zeros(num_classes, *shape))
        self.down1 = _double_conv((2 if prototype else 1) * channels + num_classes, base)
        self.down2 = _double_conv(base + num_classes, 2 * base)
        self.middle = _double_conv(2 * base + num_classes, 4 * base)
        self.up2 = _upsample(4 * base, 2 * base, upsample)
        self.merge2 = _double_conv(4 * base, 2 * base)
        self.up1 = _upsample(2 * base, base, upsample)
        self.merge1 = _double_conv(2 * base, base)
        self.out = nn.Conv2d(base, (2 if edit == "masked" else 1) * channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def set_prototypes(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """The mean training image of each class (zeros for a class absent from ``labels``)."""
        for c in range(self.num_classes):
            members = images[labels == c]
            self.prototypes[c] = members.mean(dim=0) if len(members) else 0.0

    def edit_and_mask(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G(x, target) and the mask m it applied (all ones for ``"residual"``)."""
        onehot = F.one_hot(target, self.num_classes).to(x.dtype)[:, :, None, None]

        def with_target(h: torch.Tensor) -> torch.Tensor:
            return torch.cat([h, onehot.expand(-1, -1, *h.shape[2:])], dim=1)

        first = torch.cat([with_target(x), self.prototypes[target]], dim=1) if self.prototype else with_target(x)
        h1 = self.down1(first)
        h2 = self.down2(with_target(F.avg_pool2d(h1, 2)))
        h3 = self.middle(with_target(F.avg_pool2d(h2, 2)))
        u2 = self.merge2(torch.cat([self.up2(h3), h2], dim=1))
        out = self.out(self.merge1(torch.cat([self.up1(u2), h1], dim=1)))
        if self.edit == "masked":
            delta, mask = out.chunk(2, dim=1)
            mask = torch.sigmoid(mask)
        else:
            delta, mask = out, torch.ones_like(out)
        return clamp_straight_through(x + mask * 2 * torch.tanh(delta)), mask

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.edit_and_mask(x, target)[0]


class CFGANNet(CNNNet):
    """The discriminator-classifier D (the ``cnn`` network with C + 1 outputs,
    so its named layers are the cnn's: ``conv_layer.*``, ``fc_layer.*``) and
    the generator ``generator`` (G). ``forward`` returns the logits of the C
    classes, as every classifier does; ``discriminate`` all C + 1, the last
    being "fake"; ``p_fake`` its softmax probability."""

    def __init__(
        self,
        num_classes: int,
        shape: tuple[int, int, int],
        dropout: float,
        width: int,
        unet_width: int,
        prototype: bool = False,
        upsample: str = "nearest",
        edit: str = "residual",
    ):
        _, height, width_px = shape
        if height % 4 or width_px % 4:
            raise UserError(f"cf-gan's UNet needs image sides divisible by 4 (28, 32), got {height}x{width_px}")
        super().__init__(num_classes + 1, shape, dropout, width)
        self.num_classes = num_classes
        self.generator = UNet(num_classes, shape, unet_width, prototype, upsample, edit)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_layer(self.conv_layer(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminate(x)[:, : self.num_classes]

    def p_fake(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminate(x).softmax(dim=1)[:, self.num_classes]

    def counterfactual(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.generator(x, target)


@dataclass(frozen=True)
class GANRecipe:
    epochs: int
    warmup_epochs: int
    warmup_lr: float
    lr: float
    batch_size: int
    class_weight: float
    cycle_weight: float
    identity_weight: float
    class_source: str
    sparsity_weight: float = 0.0
    mask_weight: float = 0.0
    penalty_ramp: int = 0
    penalty_beta: float = 0.0


# the per-epoch means fit() records (warm-up epochs record the classification loss only; "mask" only
# with edit = "masked")
CURVES = ("classification", "fake", "target", "realness", "cycle", "identity", "sparsity", "mask")


def other_class(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A target class drawn uniformly among the classes other than ``labels``."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + shift.to(labels.device)) % num_classes


def distance(a: torch.Tensor, b: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
    """The mean per-pixel L1 distance |a - b| (``beta`` 0), or Huber's smooth
    L1 with ``beta`` > 0, of G's closeness penalties (cycle, identity, and the
    paper's sparsity of the edit G(x, t) - x, which makes a counterfactual
    change as few pixels as it can): quadratic (d^2 / 2 beta) within ``beta`` of 0, so its
    gradient vanishes at a = b instead of keeping the constant size of L1's,
    which makes an unchanged image a fixed point of G's loss."""
    if beta == 0:
        return (a - b).abs().mean()
    return F.smooth_l1_loss(a, b, beta=beta)


def penalty_scale(g_step: int, ramp: int) -> float:
    """The factor on G's closeness penalties (cycle, identity, sparsity, mask)
    at its ``g_step``-th step (0 the first): rising linearly from 0 to 1 over
    the first ``ramp`` steps (1 throughout when ``ramp`` is 0), so G can leave
    the identity it starts as before the penalties that pull it back bite."""
    return 1.0 if g_step >= ramp else g_step / ramp


def realness(outputs: torch.Tensor) -> torch.Tensor:
    """log(p_real / p_fake) of D's C + 1 outputs: logsumexp of the class logits
    minus the fake logit, so p_fake = sigmoid(-realness)."""
    return torch.logsumexp(outputs[:, :-1], dim=1) - outputs[:, -1]


def fit(
    model: CFGANNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: GANRecipe,
    seed: int,
    device: torch.device | str,
    advance,
) -> dict[str, list[float]]:
    """StarGAN's recipe on D's C + 1 outputs, with a hinge loss on realness.

    First ``warmup_epochs`` of D's cross-entropy over the C class logits on
    real images (Adam at ``warmup_lr``), so G learns against a classifier
    that already knows the classes. Then per batch one D step and one G step
    (Adam at ``lr``, betas 0.5/0.999). D: the class cross-entropy on real
    images only, plus the hinge loss relu(1 - realness) on real images and
    relu(1 + realness) on G's counterfactuals (detached). G: -realness of its
    counterfactuals (look real; a logit, so it never saturates),
    ``class_weight`` x the cross-entropy of class logits on G(x, t) toward
    the target t (a class other than x's), ``cycle_weight`` x L1 of
    G(G(x, t), y) to x, ``identity_weight`` x L1 of G(x, y) to x and
    ``sparsity_weight`` x L1 of the edit G(x, t) - x: these closeness
    penalties are smooth L1 with ``penalty_beta`` > 0 (``distance``) and
    their weights rise from 0 over the first ``penalty_ramp`` G steps
    (``penalty_scale``). The class logits come from D itself as it trains (``class_source =
    "discriminator"``, the paper's joint training) or from a frozen copy of D
    taken after the warm-up (``"frozen"``). Returns per-epoch means."""
    generator = torch.Generator().manual_seed(seed)
    g_params = list(model.generator.parameters())
    g_ids = {id(p) for p in g_params}
    d_params = [p for p in model.parameters() if id(p) not in g_ids]
    warmup_opt = torch.optim.Adam(d_params, lr=recipe.warmup_lr)
    d_opt = torch.optim.Adam(d_params, lr=recipe.lr, betas=(0.5, 0.999))
    g_opt = torch.optim.Adam(g_params, lr=recipe.lr, betas=(0.5, 0.999))
    model.to(device).train()
    model.generator.set_prototypes(images.to(device), labels.to(device))
    judge = model
    curves = CURVES if model.generator.edit == "masked" else tuple(name for name in CURVES if name != "mask")
    history: dict[str, list[float]] = {name: [] for name in curves}
    g_steps = 0
    for epoch in range(recipe.epochs):
        adversarial = epoch >= recipe.warmup_epochs
        if adversarial and judge is model and recipe.class_source == "frozen":
            judge = _frozen_copy(model)
        sums = dict.fromkeys(curves, 0.0)
        order = torch.randperm(len(images), generator=generator)
        batches = 0
        for start in range(0, len(images), recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            x, y = images[idx].to(device), labels[idx].to(device)
            if adversarial:
                target = other_class(y, model.num_classes, generator)
                scale = penalty_scale(g_steps, recipe.penalty_ramp)
                losses = _adversarial_step(model, judge, x, y, target, recipe, scale, d_opt, g_opt)
                g_steps += 1
            else:
                losses = {"classification": F.cross_entropy(model(x), y)}
                warmup_opt.zero_grad(set_to_none=True)
                losses["classification"].backward()
                warmup_opt.step()
            for name, value in losses.items():
                if not torch.isfinite(value):
                    raise UserError(f"training cf-gan diverged ({name} loss {value.item()}); lower its lr")
                if name in sums:
                    sums[name] += value.item()
            batches += 1
            advance()
        for name in curves:
            if adversarial or name == "classification":
                history[name].append(sums[name] / batches)
            else:
                history[name].append(float("nan"))
    model.eval()
    return history


def _frozen_copy(model: CFGANNet) -> CFGANNet:
    judge = copy.deepcopy(model).eval()  # eval: no dropout in the class loss G learns from
    judge.requires_grad_(False)
    return judge


def _adversarial_step(
    model: CFGANNet,
    judge: CFGANNet,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor,
    recipe: GANRecipe,
    scale: float,
    d_opt: torch.optim.Optimizer,
    g_opt: torch.optim.Optimizer,
) -> dict[str, torch.Tensor]:
    """One D step, then one G step, on the batch ``x``, ``y`` with targets
    ``target``; ``judge`` gives G's class logits (D itself or its frozen copy);
    ``scale`` multiplies the weights of G's closeness penalties (the ramp)."""
    with torch.no_grad():
        made = model.generator(x, target)
    real_outputs = model.discriminate(x)
    classification = F.cross_entropy(real_outputs[:, : model.num_classes], y)
    fake = F.relu(1 - realness(real_outputs)).mean() + F.relu(1 + realness(model.discriminate(made))).mean()
    d_opt.zero_grad(set_to_none=True)
    (classification + fake).backward()
    d_opt.step()

    made, mask = model.generator.edit_and_mask(x, target)
    looks_real = -realness(model.discriminate(made)).mean()
    toward_target = F.cross_entropy(judge(made), target)
    cycle = distance(model.generator(made, y), x, recipe.penalty_beta)
    identity = distance(model.generator(x, y), x, recipe.penalty_beta)
    sparsity = distance(made, x, recipe.penalty_beta)
    mask_size = mask.mean()
    g_loss = (
        looks_real
        + recipe.class_weight * toward_target
        + scale
        * (
            recipe.cycle_weight * cycle
            + recipe.identity_weight * identity
            + recipe.sparsity_weight * sparsity
            + recipe.mask_weight * mask_size
        )
    )
    g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    g_opt.step()
    d_opt.zero_grad(set_to_none=True)  # G's step left gradients in D
    return {
        "classification": classification,
        "fake": fake,
        "target": toward_target,
        "realness": looks_real,
        "cycle": cycle,
        "identity": identity,
        "sparsity": sparsity,
        "mask": mask_size,
    }
