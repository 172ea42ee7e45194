"""The torch modules behind the ``cf-gan`` classifier (imported only when built):
a discriminator-classifier with C + 1 outputs (the ``cnn`` network, its last
output being "fake") and a small UNet generator G(x, target class), and the
joint training loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from probebench.errors import UserError
from probebench.plugins.classifiers._cnn_net import CNNNet


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())


class UNet(nn.Module):
    """A two-level UNet G(x, target): the target class enters as one-hot
    channels beside the image; the output is x plus a bounded edit, clamped
    to [0, 1]. The residual form starts near the identity: with a sigmoid
    output instead, one epoch on mnist-5k collapsed G to all-black images."""

    def __init__(self, num_classes: int, channels: int, base: int = 16):
        super().__init__()
        self.num_classes = num_classes
        self.down1 = _double_conv(channels + num_classes, base)
        self.down2 = _double_conv(base, 2 * base)
        self.middle = _double_conv(2 * base, 4 * base)
        self.up2 = nn.ConvTranspose2d(4 * base, 2 * base, 2, stride=2)
        self.merge2 = _double_conv(4 * base, 2 * base)
        self.up1 = nn.ConvTranspose2d(2 * base, base, 2, stride=2)
        self.merge1 = _double_conv(2 * base, base)
        self.out = nn.Conv2d(base, channels, 1)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(target, self.num_classes).to(x.dtype)[:, :, None, None]
        h1 = self.down1(torch.cat([x, onehot.expand(-1, -1, *x.shape[2:])], dim=1))
        h2 = self.down2(F.avg_pool2d(h1, 2))
        h3 = self.middle(F.avg_pool2d(h2, 2))
        u2 = self.merge2(torch.cat([self.up2(h3), h2], dim=1))
        u1 = self.merge1(torch.cat([self.up1(u2), h1], dim=1))
        return (x + torch.tanh(self.out(u1))).clamp(0, 1)


class CFGANNet(CNNNet):
    """The discriminator-classifier D (the ``cnn`` network with C + 1 outputs,
    so its named layers are the cnn's: ``conv_layer.*``, ``fc_layer.*``) and
    the generator ``generator`` (G). ``forward`` returns the logits of the C
    classes, as every classifier does; ``discriminate`` all C + 1, the last
    being "fake"; ``p_fake`` its softmax probability."""

    def __init__(self, num_classes: int, shape: tuple[int, int, int], dropout: float, width: int, unet_width: int):
        channels, height, width_px = shape
        if height % 4 or width_px % 4:
            raise UserError(f"cf-gan's UNet needs image sides divisible by 4 (28, 32), got {height}x{width_px}")
        super().__init__(num_classes + 1, shape, dropout, width)
        self.num_classes = num_classes
        self.generator = UNet(num_classes, channels, unet_width)

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
    lr: float
    batch_size: int
    cycle_weight: float
    sparsity_weight: float


# the per-epoch means fit() records
CURVES = ("classification", "fake", "adversarial", "cycle", "sparsity")


def other_class(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A target class drawn uniformly among the classes other than ``labels``."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + shift.to(labels.device)) % num_classes


def fit(
    model: CFGANNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: GANRecipe,
    seed: int,
    device: torch.device | str,
    advance,
) -> dict[str, list[float]]:
    """Joint training, one D step then one G step per batch (Adam, betas 0.5/0.999).

    D: cross-entropy of real images toward their class plus of G's
    counterfactuals (detached) toward "fake". G: cross-entropy of D on
    G(x, t) toward the target t (a class other than x's: classified as t and
    not as fake), plus ``cycle_weight`` x L1 of G(G(x, t), y) to x (the
    nested counterfactual returns) and ``sparsity_weight`` x L1 of G(x, t) to
    x (small edits: the saliency stays sparse). Returns per-epoch means."""
    generator = torch.Generator().manual_seed(seed)
    g_params = list(model.generator.parameters())
    g_ids = {id(p) for p in g_params}
    d_params = [p for p in model.parameters() if id(p) not in g_ids]
    d_opt = torch.optim.Adam(d_params, lr=recipe.lr, betas=(0.5, 0.999))
    g_opt = torch.optim.Adam(g_params, lr=recipe.lr, betas=(0.5, 0.999))
    fake = model.num_classes
    model.to(device).train()
    history: dict[str, list[float]] = {name: [] for name in CURVES}
    for _epoch in range(recipe.epochs):
        sums = dict.fromkeys(CURVES, 0.0)
        order = torch.randperm(len(images), generator=generator)
        batches = 0
        for start in range(0, len(images), recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            x, y = images[idx].to(device), labels[idx].to(device)
            target = other_class(y, model.num_classes, generator)
            with torch.no_grad():
                made = model.generator(x, target)
            classification = F.cross_entropy(model.discriminate(x), y)
            fake_loss = F.cross_entropy(model.discriminate(made), torch.full_like(y, fake))
            d_loss = classification + fake_loss
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()

            made = model.generator(x, target)
            adversarial = F.cross_entropy(model.discriminate(made), target)
            cycle = (model.generator(made, y) - x).abs().mean()
            sparsity = (made - x).abs().mean()
            g_loss = adversarial + recipe.cycle_weight * cycle + recipe.sparsity_weight * sparsity
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()
            d_opt.zero_grad(set_to_none=True)  # G's step left gradients in D

            if not (torch.isfinite(d_loss) and torch.isfinite(g_loss)):
                raise UserError(
                    f"training cf-gan diverged (D loss {d_loss.item()}, G loss {g_loss.item()}); lower its lr"
                )
            for name, value in zip(CURVES, (classification, fake_loss, adversarial, cycle, sparsity), strict=True):
                sums[name] += value.item()
            batches += 1
            advance()
        for name in CURVES:
            history[name].append(sums[name] / batches)
    model.eval()
    return history
