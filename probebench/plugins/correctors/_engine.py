"""The torch machinery behind the built-in correctors (imported only when one runs).

Every corrector here optimises a per-sample variable (a flow latent, a pixel
image, or a path of latents) in one batch, with a **per-sample stop**: each
step evaluates the stop rule on the current state of every still-active
sample, retires the samples that meet it (their state is frozen from then on),
and updates only the others. The forward/backward pass runs on the active rows
only, so a step costs in proportion to the samples still working, and
finished samples cannot drift. Adam is written out element-wise with a
per-sample step count, because ``torch.optim.Adam`` keeps momentum moving a
sample whose gradient was masked to zero.

The edit of one sample depends only on that sample (no batch statistics: the
classifier and the flow run in eval mode), so chunking a test set into batches
and editing it one image at a time give the same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from probebench.errors import UserError
from probebench.kinds import Correction


# -- latents of any structure as rows of a matrix ------------------------------
class Flat:
    """Flattens a flow's latent (a tensor, or a list/tuple of tensors as
    multiscale flows return) into rows [N, D] and back."""

    def __init__(self, z):
        self.is_seq = isinstance(z, (list, tuple))
        parts = list(z) if self.is_seq else [z]
        self.shapes = [tuple(p.shape[1:]) for p in parts]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        self.rows = torch.cat([p.reshape(len(p), -1) for p in parts], dim=1)

    def unflatten(self, rows: torch.Tensor):
        parts = [chunk.reshape(len(rows), *shape) for chunk, shape in zip(rows.split(self.sizes, dim=1), self.shapes)]
        return parts if self.is_seq else parts[0]


class Identity:
    """The pixel space as a "flow": encode and decode are the identity."""

    def encode(self, x):
        return x

    def decode(self, z):
        return z


# -- what the correctors read from ctx -----------------------------------------
def generator_of(ctx):
    generator = ctx.generator
    if generator is None or not (hasattr(generator, "encode") and hasattr(generator, "decode")):
        raise UserError(
            "this corrector needs ctx.generator with encode(x) and decode(z); "
            "add a generator to the suite (see probebench/pipeline/correct.py)"
        )
    return generator


def prober_of(ctx) -> Callable[[torch.Tensor], torch.Tensor]:
    prober = ctx.prober
    if prober is None or not callable(prober):
        raise UserError(
            "this corrector needs ctx.prober, a differentiable callable images -> P(hit); add a scorer "
            "that can guide correctors (e.g. 'prober') to the suite (see probebench/pipeline/correct.py)"
        )
    return prober


def stop_level(ctx, threshold: float | None) -> float:
    """The P(hit) at which the prober stop fires: the corrector's ``threshold``
    option when given, else ``ctx.prober_hit_level`` (the median prober
    output on validation hits, set by the correction stage)."""
    if threshold is not None:
        return float(threshold)
    if ctx.prober_hit_level is None:
        raise UserError(
            "no stop level: give the corrector a 'threshold' option or set "
            "ctx.prober_hit_level (the correction stage does)"
        )
    return float(ctx.prober_hit_level)


# -- the optimisation loop ------------------------------------------------------
@dataclass
class Evaluation:
    """One forward pass over the active rows: per-sample loss (to minimise) and
    whether each sample already meets its stop rule."""

    loss: torch.Tensor
    done: torch.Tensor


@dataclass
class Optimised:
    z: torch.Tensor  # [N, D] final variables
    steps: torch.Tensor  # [N] updates each sample took
    reached: torch.Tensor  # [N] the stop rule fired (False: step cap or divergence)
    diverged: torch.Tensor  # [N] a non-finite loss or gradient stopped it (last finite state kept)


def optimise(
    z0: torch.Tensor,
    evaluate: Callable[[torch.Tensor, torch.Tensor], Evaluation],
    *,
    lr: float,
    max_steps: int,
    update: str = "adam",
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> Optimised:
    """Minimise ``evaluate(z[idx], idx).loss`` per sample, stopping each sample
    as soon as its ``done`` flag is set or after ``max_steps`` updates.

    ``update`` is ``"adam"`` (element-wise Adam, per-sample bias correction),
    ``"normalized"`` (z <- z - lr * g / ||g||: a step of length ``lr``) or
    ``"sgd"`` (z <- z - lr * g).
    """
    n = len(z0)
    z = z0.detach().clone()
    previous = z.clone()
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    steps = torch.zeros(n, dtype=torch.long, device=z.device)
    active = torch.ones(n, dtype=torch.bool, device=z.device)
    reached = torch.zeros(n, dtype=torch.bool, device=z.device)
    diverged = torch.zeros(n, dtype=torch.bool, device=z.device)
    beta1, beta2 = betas
    while active.any():
        idx = active.nonzero().squeeze(1)
        zi = z[idx].requires_grad_(True)
        with torch.enable_grad():
            out = evaluate(zi, idx)
            finite = torch.isfinite(out.loss)
            done = out.done.bool() & finite
            go = ~done & finite & (steps[idx] < max_steps)
            grad = None
            if go.any():
                grad = torch.autograd.grad(out.loss[go].sum(), zi)[0][go].detach()
        bad = ~finite
        if grad is not None:
            bad_grad = ~torch.isfinite(grad).all(dim=1)
            bad[go.nonzero().squeeze(1)[bad_grad]] = True
            go = go & ~bad
            grad = grad[~bad_grad]
        # a state whose loss is not finite came from the last update: undo it
        z[idx[~finite]] = previous[idx[~finite]]
        diverged[idx[bad]] = True
        reached[idx[done]] = True
        sel = idx[go]
        if len(sel):
            previous[sel] = z[sel]
            t = (steps[sel] + 1).unsqueeze(1).to(z.dtype)
            if update == "adam":
                m[sel] = beta1 * m[sel] + (1 - beta1) * grad
                v[sel] = beta2 * v[sel] + (1 - beta2) * grad.square()
                m_hat = m[sel] / (1 - beta1**t)
                v_hat = v[sel] / (1 - beta2**t)
                z[sel] = z[sel] - lr * m_hat / (v_hat.sqrt() + eps)
            elif update == "normalized":
                z[sel] = z[sel] - lr * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
            else:
                z[sel] = z[sel] - lr * grad
            steps[sel] += 1
        active[idx[~go]] = False
    return Optimised(z, steps, reached, diverged)


# -- shared pieces of the objectives ---------------------------------------------
def straight_through_clamp(x: torch.Tensor) -> torch.Tensor:
    """``x`` clamped to [0, 1] in value with the gradient of the unclamped ``x``:
    the reference's ``x.data = clip(x.data)``. (A plain ``.clamp(0, 1)`` has zero
    gradient at and beyond the bounds, so saturated pixels would stop steering
    the latent; applied after a flow's own straight-through clamp it would undo it.)"""
    return x + (x.clamp(0, 1) - x).detach()


def decode_rows(generator, flat: Flat, rows: torch.Tensor) -> torch.Tensor:
    """Decoded images in [0, 1], clipped straight-through as the reference does."""
    return straight_through_clamp(generator.decode(flat.unflatten(rows)))


def predictions(ctx, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ctx.classifier(images).argmax(dim=1)


def done_flags(rule: str, p_hit: torch.Tensor | None, level: float, images, ctx, original: torch.Tensor):
    """Which samples meet the stop rule: ``prober`` (P(hit) >= level), ``flip``
    (the classifier's prediction differs from its prediction on the original
    image) or ``either``."""
    flags = torch.zeros(len(images), dtype=torch.bool, device=images.device)
    if rule in ("prober", "either"):
        flags |= p_hit.detach() >= level
    if rule in ("flip", "either"):
        flags |= predictions(ctx, images) != original
    return flags


def _in_chunks(ctx, images: torch.Tensor, size: int, edit) -> Correction:
    """The chunk loop every corrector shares: ``edit(x, part) -> (edited, steps,
    details)`` on each chunk ``x = images[part]`` of at most ``size`` images
    (on ``ctx.device``); the edits, steps and each per-sample detail joined
    on the CPU."""
    size = max(1, size)
    edited, steps, details = [], [], {}
    for start in range(0, len(images), size):
        part = slice(start, min(len(images), start + size))
        chunk_edited, chunk_steps, chunk_details = edit(images[part].to(ctx.device), part)
        edited.append(chunk_edited.cpu())
        steps.append(chunk_steps.cpu())
        for key, value in chunk_details.items():
            details.setdefault(key, []).append(value.cpu())
    return Correction(torch.cat(edited), torch.cat(steps), {k: torch.cat(v) for k, v in details.items()})


def _original_outputs(ctx, images: torch.Tensor):
    with torch.no_grad():
        logits = ctx.classifier(images)
    top2 = logits.topk(2, dim=1).indices
    return top2[:, 0], top2[:, 1]


def _finish(images: torch.Tensor, edited: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Samples that took no step are returned bit-identical to their input."""
    untouched = steps == 0
    edited[untouched] = images[untouched]
    return edited


def _objective_value(target: str, ctx, prober, x: torch.Tensor, runner_up: torch.Tensor) -> torch.Tensor:
    if target == "prober":
        return prober(x)
    probs = ctx.classifier(x).softmax(dim=1)
    return probs.gather(1, runner_up.unsqueeze(1)).squeeze(1)


# -- the correctors ----------------------------------------------------------------
def _edit_latents(ctx, images, generator, objective, **optimise_options) -> Correction:
    """The single-point correctors' edit: per chunk of images, encode, optimise
    the latent rows with ``objective(flat, original, runner_up)`` (a function
    returning the ``evaluate`` of ``optimise``), decode, and keep the stop
    flags and the latent distance travelled."""

    def edit(x, _part):
        original, runner_up = _original_outputs(ctx, x)
        with torch.no_grad():
            flat = Flat(generator.encode(x))
        result = optimise(flat.rows, objective(flat, original, runner_up), **optimise_options)
        with torch.no_grad():
            edited = decode_rows(generator, flat, result.z)
        travelled = (result.z - flat.rows).norm(dim=1)
        details = {"reached": result.reached, "diverged": result.diverged, "latent_norm": travelled}
        return _finish(x, edited, result.steps), result.steps, details

    return _in_chunks(ctx, images, ctx.batch_size, edit)


def prober_latent(
    ctx, images, *, lr: float, threshold: float | None, max_steps: int, stop: str, pixel_space: bool = False
) -> Correction:
    """Adam on z = G^-1(x) (or on x itself when ``pixel_space``) minimising the
    cross-entropy of prober(clamp(G(z))) toward hit, i.e. -log P(hit)."""
    generator = Identity() if pixel_space else generator_of(ctx)
    prober = prober_of(ctx)
    level = stop_level(ctx, threshold) if stop != "flip" else 0.0

    def objective(flat, original, _runner_up):
        def evaluate(zi, idx):
            xi = decode_rows(generator, flat, zi)
            p_hit = prober(xi)
            loss = -p_hit.clamp_min(1e-6).log()
            return Evaluation(loss, done_flags(stop, p_hit, level, xi, ctx, original[idx]))

        return evaluate

    return _edit_latents(ctx, images, generator, objective, lr=lr, max_steps=max_steps)


def confidence_ascent(
    ctx,
    images,
    *,
    eta: float,
    target: str,
    normalize: bool,
    threshold: float | None,
    max_steps: int,
    stop: str,
    pixel_space: bool = False,
) -> Correction:
    """Boundary crossing option 1: z <- z + eta * grad f(G(z)) (normalised to a
    step of length eta when ``normalize``)."""
    generator = Identity() if pixel_space else generator_of(ctx)
    prober = prober_of(ctx) if target == "prober" or stop != "flip" else None
    level = stop_level(ctx, threshold) if stop != "flip" else 0.0

    def objective(flat, original, runner_up):
        def evaluate(zi, idx):
            xi = decode_rows(generator, flat, zi)
            f = _objective_value(target, ctx, prober, xi, runner_up[idx])
            p_hit = f if target == "prober" else (prober(xi) if stop != "flip" else None)
            return Evaluation(-f, done_flags(stop, p_hit, level, xi, ctx, original[idx]))

        return evaluate

    update = "normalized" if normalize else "sgd"  # sgd: the literal z <- z + eta * grad f
    return _edit_latents(ctx, images, generator, objective, lr=eta, max_steps=max_steps, update=update)


def monotone_path(
    ctx,
    images,
    *,
    length: int,
    lam: float,
    lr: float,
    target: str,
    goal: float | None,
    threshold: float | None,
    max_steps: int,
    stop: str,
) -> Correction:
    """Boundary crossing option 2: a path z_1..z_T optimised with
    sum_t |f(G(z_t)) - target_t| + lam * sum_t ||z_t - z_0||, where target_t
    climbs linearly from f(x) to ``goal`` (the draft's t/T when f(x) = 0 and
    goal = 1). A sample stops when its endpoint G(z_T) meets the stop rule."""
    generator = generator_of(ctx)
    prober = prober_of(ctx) if target == "prober" or stop != "flip" else None
    level = stop_level(ctx, threshold) if stop != "flip" else 0.0
    if goal is None:
        goal = stop_level(ctx, threshold) if target == "prober" else 1.0
    fractions = torch.arange(1, length + 1, dtype=torch.float32, device=ctx.device) / length

    def edit(x, _part):
        original, runner_up = _original_outputs(ctx, x)
        with torch.no_grad():
            flat = Flat(generator.encode(x))
            f0 = _objective_value(target, ctx, prober, x, runner_up)
        dim = flat.rows.shape[1]
        start = flat.rows.repeat(1, length)  # [N, T*D]: every point starts at G^-1(x)

        def evaluate(zi, idx):
            n = len(zi)
            points = zi.reshape(n * length, dim)
            xi = decode_rows(generator, flat, points)
            f = _objective_value(target, ctx, prober, xi, runner_up[idx].repeat_interleave(length))
            f = f.reshape(n, length)
            targets = f0[idx, None] + (goal - f0[idx, None]) * fractions
            identity = (zi.reshape(n, length, dim) - flat.rows[idx, None]).norm(dim=2)
            loss = (f - targets).abs().sum(dim=1) + lam * identity.sum(dim=1)
            end = xi.reshape(n, length, *xi.shape[1:])[:, -1]
            p_end = f[:, -1] if target == "prober" else (prober(end) if stop != "flip" else None)
            return Evaluation(loss, done_flags(stop, p_end, level, end, ctx, original[idx]))

        result = optimise(start, evaluate, lr=lr, max_steps=max_steps)
        with torch.no_grad():
            n = len(x)
            decoded = decode_rows(generator, flat, result.z.reshape(n * length, dim))
            path = decoded.reshape(n, length, *x.shape[1:])
        edited = _finish(x, path[:, -1].clone(), result.steps)
        untouched = result.steps == 0
        path[untouched] = x[untouched].unsqueeze(1).expand(-1, length, *x.shape[1:])
        return edited, result.steps, {"reached": result.reached, "diverged": result.diverged, "path": path}

    return _in_chunks(ctx, images, max(1, ctx.batch_size // length), edit)


def latent_noise(
    ctx, images, *, norm: float | None, lr: float, threshold: float | None, max_steps: int, stop: str
) -> Correction:
    """A random latent step: z' = G^-1(x) + r * u with u a uniformly random unit
    direction and r the latent distance the ``prober-latent`` edit of the same
    image travels with the same options (or the fixed ``norm``)."""
    generator = generator_of(ctx)
    if norm is None:
        matched = prober_latent(ctx, images, lr=lr, threshold=threshold, max_steps=max_steps, stop=stop)
        radii = matched.details["latent_norm"]
    else:
        radii = torch.full((len(images),), float(norm))
    noise = torch.Generator().manual_seed(int(ctx.seed))

    def edit(x, part):
        radius = radii[part]
        with torch.no_grad():
            flat = Flat(generator.encode(x))
            direction = torch.randn(flat.rows.shape, generator=noise).to(ctx.device)
            direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
            z = flat.rows + radius.to(ctx.device).unsqueeze(1) * direction
            edited = decode_rows(generator, flat, z)
        moved = radius > 0
        edited = torch.where(moved.to(ctx.device).view(-1, *[1] * (x.dim() - 1)), edited, x)
        bad = ~torch.isfinite(edited.flatten(1)).all(dim=1)
        edited[bad] = x[bad]
        return edited, moved.long(), {"latent_norm": radius.clone()}

    return _in_chunks(ctx, images, ctx.batch_size, edit)
