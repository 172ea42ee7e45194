"""``class-flow``: analysis-by-synthesis with a class-conditional base
distribution on the suite's trained flow. Torch code in ``_class_flow.py``
(imported when it runs).

The flow's latent z = G^-1(x) of every *training* image is collected per
class, and each class gets a diagonal Gaussian N(mu_c, diag(var_c)) (training
labels are allowed: the classifier was trained on them; no test label is ever
read). That is a generative classifier on the same latent: log p(z | c) +
log p(c). For an image the classifier predicts as class y, the target is the
class of highest density other than y; the prober decides *whether* the loop
edits (the loop's flag), and the edit is Adam on z ascending log p(z | target)
(toward the target class's region of the latent) until the classifier
predicts the target or ``max_steps``. ``mode = "relabel"`` predicts the target
directly, the edit-free control. With ``only_disagreeing`` an image is edited
only where the generative classifier's own top class differs from the
classifier's prediction (two signals must both say "wrong").
"""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl
from probebench.plugins.correctors._options import require_choice, require_count
from probebench.plugins.correctors.class_aware import MODES


class ClassFlow:
    """Edit the flow latent toward the class whose class-conditional density
    (per-class Gaussians fitted on the training images' latents) is highest
    other than the prediction."""

    name = "class-flow"
    version = "1"
    option_help = {
        "mode": "edit (latent density ascent toward the target until the classifier predicts it) or relabel (predict it)",
        "only_disagreeing": "edit only images whose highest-density class differs from the classifier's prediction",
        "shrinkage": "each class's latent variance is shrunk this far toward the pooled variance, in [0, 1]",
        "lr": "Adam learning rate on the latent",
        "max_steps": "step cap per sample",
    }
    option_ranges = {"shrinkage": "[0, 1]", "lr": "(0, inf)", "max_steps": "[1, inf)"}

    def __init__(
        self,
        mode: str = "edit",
        only_disagreeing: bool = False,
        shrinkage: float = 0.5,
        lr: float = 0.1,
        max_steps: int = 200,
    ):
        where = f"corrector {self.name!r}"
        require_choice(self.name, "mode", mode, MODES)
        if not isinstance(only_disagreeing, bool):
            raise UserError(f"{where}: only_disagreeing must be true or false, got {only_disagreeing!r}")
        if not 0 <= shrinkage <= 1:
            raise UserError(f"{where}: shrinkage must lie in [0, 1], got {shrinkage}")
        if not lr > 0:
            raise UserError(f"{where}: lr must be > 0, got {lr}")
        require_count(self.name, "max_steps", max_steps)
        self.mode, self.only_disagreeing, self.shrinkage = mode, only_disagreeing, shrinkage
        self.lr, self.max_steps = lr, max_steps

    def correct(self, ctx, images):
        from probebench.plugins.correctors._class_flow import class_flow

        return class_flow(ctx, images, self)


@hookimpl
def register_correctors():
    return [ClassFlow]
