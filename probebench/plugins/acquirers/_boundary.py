"""Torch code of the generating acquirers (imported only when one runs)."""

from __future__ import annotations

from dataclasses import replace

import torch

from probebench.errors import UserError
from probebench.kinds import Acquisition
from probebench.plugins.acquirers.pool import least_confident, pool_confidence
from probebench.plugins.correctors._engine import Flat, decode_rows


def flow_of(ctx, name: str):
    if ctx.generator is None:
        raise UserError(f"acquirer {name!r} edits in a flow's latent space: add a generator to the suite")
    return ctx.generator


@torch.no_grad()
def top_two(ctx, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(margin p_top - p_runner-up, runner-up class) [N] of the classifier, batched."""
    probs = ctx.forward(images)[0].softmax(dim=1)
    top = probs.topk(2, dim=1)
    return top.values[:, 0] - top.values[:, 1], top.indices[:, 1]


def crossing_pairs(ctx, flow, images: torch.Tensor, eta: float, max_steps: int, refine: int = 4):
    """Per image, walk the latent toward the runner-up class until the
    prediction flips, then bisect the last step ``refine`` times: (before
    [N,C,H,W], after [N,C,H,W], crossed bool [N], steps [N]). ``before`` is
    the last decoded image still of the original class (the image itself
    before the first step), ``after`` the first one past the boundary (the
    image itself where the path did not cross within ``max_steps``); after
    bisection they lie within eta / 2**refine of each other in the latent.
    Batched with a per-sample stop."""
    x = images.to(ctx.device)
    with torch.no_grad():
        top2 = ctx.classifier(x).topk(2, dim=1).indices
        flat = Flat(flow.encode(x))
    original, runner_up = top2[:, 0], top2[:, 1]
    z = flat.rows.clone()
    z_before, z_after = z.clone(), z.clone()
    crossed = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    steps = torch.zeros(len(x), dtype=torch.long, device=x.device)
    for step in range(max_steps + 1):
        active = (~crossed).nonzero().squeeze(1)
        if not len(active):
            break
        zi = z[active].detach().requires_grad_(True)
        log_p = ctx.classifier(decode_rows(flow, flat, zi)).log_softmax(dim=1)
        flipped = log_p.argmax(dim=1) != original[active]
        with torch.no_grad():
            z_after[active[flipped]] = zi[flipped].detach()
            z_before[active[~flipped]] = zi[~flipped].detach()
            crossed[active[flipped]] = True
        if step == max_steps or bool(flipped.all()):
            continue
        f = log_p.gather(1, runner_up[active, None]) - log_p.gather(1, original[active, None])
        (grad,) = torch.autograd.grad(f.sum(), zi)
        moving = ~flipped
        with torch.no_grad():
            g = grad[moving]
            z[active[moving]] = zi[moving].detach() + eta * g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
            steps[active[moving]] += 1
    with torch.no_grad():
        for _ in range(refine if bool(crossed.any()) else 0):
            middle = (z_before[crossed] + z_after[crossed]) / 2
            flips = ctx.classifier(decode_rows(flow, flat, _rows_of(flat, middle, crossed))[crossed]).argmax(dim=1)
            past = flips != original[crossed]
            index = crossed.nonzero().squeeze(1)
            z_after[index[past]] = middle[past]
            z_before[index[~past]] = middle[~past]
        before, after = decode_rows(flow, flat, z_before), decode_rows(flow, flat, z_after)
    before[steps == 0] = x[steps == 0]  # the image itself: its own reconstruction may differ by float error
    return before.cpu(), after.cpu(), crossed.cpu(), steps.cpu()


def _rows_of(flat: Flat, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Latent rows of the whole batch with ``rows`` where ``mask`` (a flow decodes a full batch)."""
    full = flat.rows.clone()
    full[mask] = rows
    return full


def boundary_path_acquisition(
    ctx, pool: torch.Tensor, k: int, *, eta: float, max_steps: int, refine: int
) -> Acquisition:
    flow = flow_of(ctx, "boundary-path")
    margin, _runner_up = top_two(ctx, pool)
    candidates = least_confident(margin, k)
    parts = [
        crossing_pairs(ctx, flow, pool[candidates[s : s + ctx.batch_size]], eta, max_steps, refine)
        for s in range(0, len(candidates), ctx.batch_size)
    ]
    before, after, crossed, _steps = (torch.cat(p) for p in zip(*parts, strict=True))
    images, source, generated = [], [], []
    for i in crossed.nonzero().squeeze(1).tolist():
        for image in (before[i], after[i]):
            if len(images) < k:
                images.append(image)
                source.append(int(candidates[i]))
                generated.append(True)
    for i in (~crossed).nonzero().squeeze(1).tolist():  # fewer crossings than slots: real pool images
        if len(images) < k:
            images.append(pool[candidates[i]])
            source.append(int(candidates[i]))
            generated.append(False)
    return Acquisition(torch.stack(images), torch.tensor(source, dtype=torch.long), torch.tensor(generated))


def boundary_prober_acquisition(ctx, pool, k, prober_options, corrector_options) -> Acquisition:
    flow = flow_of(ctx, "boundary-prober")
    p_hit, prober = pool_confidence(ctx, "prober", prober_options, pool)
    candidates = least_confident(p_hit, k)
    with torch.no_grad():
        train_hit = ctx.forward(ctx.train_images)[0].argmax(dim=1) == ctx.train_labels
        train_p = torch.cat(
            [
                prober.p_hit(ctx.train_images[s : s + ctx.batch_size].to(ctx.device)).cpu()
                for s in range(0, len(ctx.train_images), ctx.batch_size)
            ]
        )
    level = float(train_p[train_hit].median()) if train_hit.any() else 0.5
    corrector = ctx.registry.create("corrector", "prober-latent", corrector_options)
    inputs = replace(ctx, generator=flow, prober=prober.p_hit, prober_hit_level=level)
    correction = corrector.correct(inputs, pool[candidates])
    edited = correction.images.detach().cpu().clamp(0, 1)
    return Acquisition(edited, candidates, torch.as_tensor(correction.steps).cpu() > 0)
