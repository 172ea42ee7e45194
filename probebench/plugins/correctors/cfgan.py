"""``cf-gan`` corrector: replace an image by the ``cf-gan`` classifier's own
counterfactual toward the class it ranked second (arXiv 2310.00761's
generator used as a corrector, in the same correction table as the flows)."""

from __future__ import annotations

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
        from probebench.plugins.classifiers.cfgan import apply_cfgan

        def toward_runner_up(model, x):
            return model.counterfactual(x, model(x).topk(2, dim=1).indices[:, 1]).clamp(0, 1)

        edited = apply_cfgan(ctx, images, "corrector cf-gan", toward_runner_up)
        return Correction(edited, torch.ones(len(images), dtype=torch.long))


@hookimpl
def register_correctors():
    return [CFGANCorrector]
