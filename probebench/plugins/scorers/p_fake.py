"""``p-fake``: the confidence a discriminator-classifier gives by not calling an image fake."""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


class PFake:
    """1 - p_fake: one minus the probability of the "fake" output of a
    discriminator-classifier (the ``cf-gan`` classifier; arXiv 2310.00761
    reads p_fake as prediction uncertainty). Defined only for a classifier
    whose model has ``p_fake(images) -> [N]``; on another one it fails in one
    line naming ``cf-gan``."""

    name = "p-fake"
    version = "1"

    def score(self, ctx, batch):
        import torch

        model = ctx.classifier
        if not callable(getattr(model, "p_fake", None)):
            raise UserError(
                f"p-fake needs the 'cf-gan' classifier (a model with a fake output), "
                f'got a {type(model).__name__}: set classifier = {{ name = "cf-gan" }} or drop p-fake'
            )
        parts = []
        with torch.no_grad():
            for start in range(0, len(batch.images), ctx.batch_size):
                x = batch.images[start : start + ctx.batch_size].to(ctx.device)
                parts.append(model.p_fake(x).cpu())
        return 1.0 - torch.cat(parts)


@hookimpl
def register_scorers():
    return [PFake]
