"""Generating acquirers from the boundary-crossing reference (option 1 paths
and the prober-guided edits of the correction stage): they start from
promising pool images and hand the oracle images made in a flow's latent
space. Each needs ``ctx.generator`` (the suite's first generator)."""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


class BoundaryPath:
    """Paths in the flow's latent from the ``k`` pool images of smallest
    top-2 margin toward each one's runner-up class (option 1:
    z <- z + eta * grad (log p_runner-up - log p_top) / ||grad||), the step
    that crosses bisected ``refine`` times; acquires the last image before
    the prediction flips and the first after, two per
    path, for the paths that cross first in order of margin. Slots left over
    when fewer paths cross within ``max_steps`` go to the next uncrossed
    candidates' own pool images."""

    name = "boundary-path"
    version = "1"
    generates = True
    option_help = {
        "eta": "latent step length",
        "max_steps": "steps a path may take before it gives up",
        "refine": "bisections of the crossing step (before and after end within eta / 2**refine)",
    }

    def __init__(self, eta: float = 1.0, max_steps: int = 40, refine: int = 4):
        if not eta > 0:
            raise UserError(f"boundary-path: eta must be > 0, got {eta}")
        if max_steps < 1:
            raise UserError(f"boundary-path: max_steps must be >= 1, got {max_steps}")
        if refine < 0:
            raise UserError(f"boundary-path: refine must be >= 0, got {refine}")
        self.eta, self.max_steps, self.refine = eta, max_steps, refine

    def acquire(self, ctx, pool, k, generator):
        from probebench.plugins.acquirers._boundary import boundary_path_acquisition

        return boundary_path_acquisition(ctx, pool, k, eta=self.eta, max_steps=self.max_steps, refine=self.refine)


class BoundaryProber:
    """The prober-guided latent edits of the correction stage
    (``prober-latent``) on the ``k`` pool images of least P(hit): acquires
    the edited images (a pool image the edit leaves alone is acquired as it
    is). The prober is the ``prober`` scorer with ``prober_options``, trained
    on this round's classifier; the edit stops at the median P(hit) of its
    training hits."""

    name = "boundary-prober"
    version = "1"
    generates = True
    option_help = {
        "prober_options": "options of the prober scorer (`probebench show scorer prober`)",
        "corrector_options": "options of the prober-latent corrector (`probebench show corrector prober-latent`)",
    }

    def __init__(self, prober_options: dict | None = None, corrector_options: dict | None = None):
        self.prober_options = {"source": "train", "outputs": "none", **(prober_options or {})}
        self.corrector_options = {"max_steps": 100, **(corrector_options or {})}

    def acquire(self, ctx, pool, k, generator):
        from probebench.plugins.acquirers._boundary import boundary_prober_acquisition

        return boundary_prober_acquisition(ctx, pool, k, self.prober_options, self.corrector_options)


@hookimpl
def register_acquirers():
    return [BoundaryPath, BoundaryProber]
