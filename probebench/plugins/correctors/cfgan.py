"""``cf-gan`` corrector: replace an image by the ``cf-gan`` classifier's own
counterfactual toward the class it ranked second (arXiv 2310.00761's
generator used as a corrector, in the same correction table as the flows)."""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


class CFGANCorrector:
    """x' = G(x, runner-up): the counterfactual of x toward the class the
    classifier ranked second on x. Label-free: when the classifier misses, the
    true class is most often its runner-up (the class it almost chose), and G
    was trained to turn an image into a chosen class while staying close to
    it (cycle loss). One step per image; no generator of the suite is used
    (G is part of the ``cf-gan`` classifier), so ``uses_generator = False``.
    The correction grid's delta x' - x is the paper's saliency |x - G(x)|.
    Defined only for the ``cf-gan`` classifier; on another one it fails in
    one line naming it."""

    name = "cf-gan"
    version = "1"
    uses_generator = False

    def correct(self, ctx, images):
        import torch

        from probebench.kinds import Correction

        model = ctx.classifier
        if not callable(getattr(model, "counterfactual", None)):
            raise UserError(
                f"corrector cf-gan needs the 'cf-gan' classifier (a model with a counterfactual generator), "
                f'got a {type(model).__name__}: set classifier = {{ name = "cf-gan" }} or drop this corrector'
            )
        parts = []
        with torch.no_grad():
            for start in range(0, len(images), ctx.batch_size):
                x = images[start : start + ctx.batch_size].to(ctx.device)
                runner_up = model(x).topk(2, dim=1).indices[:, 1]
                parts.append(model.counterfactual(x, runner_up).clamp(0, 1).cpu())
        return Correction(torch.cat(parts), torch.ones(len(images), dtype=torch.long))


@hookimpl
def register_correctors():
    return [CFGANCorrector]
