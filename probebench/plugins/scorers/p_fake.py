"""``p-fake``: the confidence a discriminator-classifier gives by not calling an image fake."""

from __future__ import annotations

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
        from probebench.plugins.classifiers.cfgan import apply_cfgan

        return 1.0 - apply_cfgan(ctx, batch.images, "scorer p-fake", lambda model, x: model.p_fake(x))


@hookimpl
def register_scorers():
    return [PFake]
