"""The torch side of ``class-target`` and ``latent-shrink`` (imported only when one runs)."""

from __future__ import annotations

import torch

from probebench.kinds import Correction
from probebench.plugins.correctors._engine import (
    Evaluation,
    Flat,
    _finish,
    _in_chunks,
    decode_rows,
    generator_of,
    optimise,
)


def knn_votes(ctx, images: torch.Tensor, k: int, layer: str) -> torch.Tensor:
    """[N, k] training labels of each image's k nearest training images (Euclidean, features at ``layer``)."""
    train = ctx.forward(ctx.train_images, (layer,))[1][layer].flatten(1)
    test = ctx.forward(images, (layer,))[1][layer].flatten(1)
    votes = []
    for start in range(0, len(test), 256):
        nearest = torch.cdist(test[start : start + 256], train).topk(min(k, len(train)), largest=False).indices
        votes.append(ctx.train_labels[nearest])
    return torch.cat(votes) if votes else torch.empty(0, k, dtype=torch.long)


def dropout_votes(ctx, images: torch.Tensor, passes: int) -> torch.Tensor:
    """[N, passes] predicted classes of MC-dropout samples (seeded by the run seed)."""
    from probebench.plugins.scorers._mc_dropout import dropout_modules, dropout_sampling

    votes = []
    with torch.random.fork_rng(), dropout_sampling(dropout_modules(ctx.classifier)):
        torch.manual_seed(int(ctx.seed))
        for _ in range(passes):
            votes.append(ctx.forward(images)[0].argmax(dim=1))
    return torch.stack(votes, dim=1)


def disagreeing_target(votes: torch.Tensor, predictions: torch.Tensor, num_classes: int, min_votes: int):
    """(target [N], has_target [N]): the most voted class other than the
    prediction (ties: the smaller class index), where it has at least ``min_votes`` votes."""
    counts = torch.zeros(len(votes), num_classes, dtype=torch.long)
    counts.scatter_add_(1, votes, torch.ones_like(votes))
    counts[torch.arange(len(votes)), predictions] = -1
    best, target = counts.max(dim=1)
    return target, best >= min_votes


def class_target(ctx, images: torch.Tensor, options) -> Correction:
    """Target classes from the votes; ``relabel`` predicts them, ``edit`` moves the
    flow latent toward them (cross-entropy, Adam) until the classifier predicts them."""
    predictions = ctx.forward(images)[0].argmax(dim=1)
    if options.source == "knn":
        votes = knn_votes(ctx, images, options.k, options.layer)
    else:
        votes = dropout_votes(ctx, images, options.passes)
    target, has_target = disagreeing_target(votes, predictions, ctx.num_classes, options.min_votes)
    details = {"target": torch.where(has_target, target, -1)}
    if options.mode == "relabel":
        steps = torch.zeros(len(images), dtype=torch.long)
        return Correction(images.clone(), steps, details, torch.where(has_target, target, predictions))
    generator = generator_of(ctx)

    def edit(x, part):
        goal, active = target[part].to(ctx.device), has_target[part].to(ctx.device)
        with torch.no_grad():
            flat = Flat(generator.encode(x))

        def evaluate(zi, idx):
            logits = ctx.classifier(decode_rows(generator, flat, zi))
            loss = torch.nn.functional.cross_entropy(logits, goal[idx], reduction="none")
            return Evaluation(loss, (logits.argmax(dim=1) == goal[idx]) | ~active[idx])

        result = optimise(flat.rows, evaluate, lr=options.lr, max_steps=options.max_steps)
        with torch.no_grad():
            edited = decode_rows(generator, flat, result.z)
        return _finish(x, edited, result.steps), result.steps, {"reached": result.reached}

    correction = _in_chunks(ctx, images, ctx.batch_size, edit)
    correction.details.update(details)
    return correction


def latent_shrink(ctx, images: torch.Tensor, factor: float) -> Correction:
    """decode(factor * encode(x)) per chunk; a non-finite decode keeps the image."""
    generator = generator_of(ctx)

    def edit(x, _part):
        with torch.no_grad():
            flat = Flat(generator.encode(x))
            edited = decode_rows(generator, flat, flat.rows * factor)
        bad = ~torch.isfinite(edited.flatten(1)).all(dim=1)
        edited[bad] = x[bad]
        steps = (~bad).long()
        return edited, steps, {}

    return _in_chunks(ctx, images, ctx.batch_size, edit)
