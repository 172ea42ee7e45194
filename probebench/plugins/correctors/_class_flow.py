"""The torch side of ``class-flow`` (imported only when it runs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from probebench.kinds import Correction
from probebench.plugins.correctors._class_aware import edit_toward
from probebench.plugins.correctors._engine import Flat, generator_of

VARIANCE_FLOOR = 1e-6


@dataclass(frozen=True)
class ClassGaussians:
    """Per-class diagonal Gaussians on flattened latent rows: a generative classifier."""

    mean: torch.Tensor  # [C, D]
    var: torch.Tensor  # [C, D]
    log_prior: torch.Tensor  # [C]; -inf for a class without training images

    def log_density(self, rows: torch.Tensor) -> torch.Tensor:
        """[N, C]: log N(z; mu_c, diag var_c) up to the constant -D/2 log 2pi."""
        precision = 1 / self.var  # expanded (no [N, C, D] tensor): sum_d (z - mu)^2 / var
        squares = rows.square() @ precision.T - 2 * rows @ (self.mean * precision).T
        constant = (self.mean.square() * precision + self.var.log()).sum(dim=1)
        return -0.5 * (squares + constant)

    def log_joint(self, rows: torch.Tensor) -> torch.Tensor:
        """[N, C]: log p(z | c) + log p(c), the generative classifier's scores."""
        return self.log_density(rows) + self.log_prior

    def class_loss(self, rows: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """[N]: -log p(z | target) / D, the edit's loss (per latent dimension)."""
        mean, var = self.mean[target], self.var[target]
        return 0.5 * ((rows - mean).square() / var + var.log()).mean(dim=1)


def fit_class_gaussians(rows: torch.Tensor, labels: torch.Tensor, num_classes: int, shrinkage: float) -> ClassGaussians:
    """Means, variances (shrunk ``shrinkage`` of the way to the pooled within-class
    variance, floored) and class frequencies of latent ``rows`` by ``labels``."""
    counts = torch.bincount(labels, minlength=num_classes).to(rows.dtype)
    sums = torch.zeros(num_classes, rows.shape[1], dtype=rows.dtype).index_add_(0, labels, rows)
    mean = sums / counts.clamp_min(1).unsqueeze(1)
    centred = rows - mean[labels]
    squares = torch.zeros_like(sums).index_add_(0, labels, centred.square())
    var = squares / counts.clamp_min(1).unsqueeze(1)
    pooled = centred.square().mean(dim=0)
    var = ((1 - shrinkage) * var + shrinkage * pooled).clamp_min(VARIANCE_FLOOR)
    var[counts == 0] = pooled.clamp_min(VARIANCE_FLOOR)
    log_prior = (counts / counts.sum()).log()
    return ClassGaussians(mean, var, log_prior)


@torch.no_grad()
def latent_rows(ctx, images: torch.Tensor) -> torch.Tensor:
    """[N, D] flattened flow latents of ``images`` on the CPU, batched."""
    generator = generator_of(ctx)
    parts = [
        Flat(generator.encode(images[s : s + ctx.batch_size].to(ctx.device))).rows.cpu()
        for s in range(0, len(images), ctx.batch_size)
    ]
    return torch.cat(parts)


def class_flow(ctx, images: torch.Tensor, options) -> Correction:
    """Targets from the class-conditional latent density; ``relabel`` predicts
    them, ``edit`` ascends log p(z | target) until the classifier predicts it."""
    gaussians = fit_class_gaussians(
        latent_rows(ctx, ctx.train_images), ctx.train_labels, ctx.num_classes, options.shrinkage
    )
    predictions = ctx.forward(images)[0].argmax(dim=1)
    scores = gaussians.log_joint(latent_rows(ctx, images))
    generative = scores.argmax(dim=1)
    scores[torch.arange(len(images)), predictions] = -torch.inf
    target = scores.argmax(dim=1)
    has_target = torch.isfinite(scores.max(dim=1).values)
    if options.only_disagreeing:
        has_target &= generative != predictions
    details = {"target": torch.where(has_target, target, -1), "generative_prediction": generative}
    if options.mode == "relabel":
        steps = torch.zeros(len(images), dtype=torch.long)
        return Correction(images.clone(), steps, details, torch.where(has_target, target, predictions))
    on_device = ClassGaussians(*(t.to(ctx.device) for t in (gaussians.mean, gaussians.var, gaussians.log_prior)))
    correction = edit_toward(
        ctx, images, target, has_target, options.lr, options.max_steps, latent_loss=on_device.class_loss
    )
    correction.details.update(details)
    return correction
