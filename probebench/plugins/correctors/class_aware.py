"""Class-aware correctors: the *target class* comes from a signal other than
P(hit) (which carries no class), the prober only decides *whether* to edit
(the loop's flag), and the edit goes toward that class. Plus flow
purification, a class-blind move back toward the data manifold for
corrupted images. Torch code in ``_class_aware.py`` (imported when one runs).

Target classes (option ``source``), each a vote that never sees a test label:

- ``knn``: the classes of the ``k`` nearest training images in the
  classifier's feature space at ``layer`` (training labels are allowed: the
  classifier was trained on them);
- ``mc-dropout``: the predicted classes of ``passes`` MC-dropout samples.

The target is the most frequent voted class *other than the prediction*;
an image whose votes all agree with its prediction is left alone (0 steps).
``mode = "edit"`` optimises the flow latent (Adam, ``lr``) on the
classifier's cross-entropy toward the target until the classifier predicts
it or ``max_steps``; ``mode = "relabel"`` predicts the target directly
(``Correction.predictions``), the edit-free control: an edit that only
crosses to the voted class can at best match it.
"""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl
from probebench.plugins.correctors._options import require_count

SOURCES = ("knn", "mc-dropout")
MODES = ("edit", "relabel")


class ClassTarget:
    """Edit toward the class the training neighbours (``knn``) or MC-dropout
    samples (``mc-dropout``) vote for when they disagree with the prediction."""

    name = "class-target"
    version = "1"
    option_help = {
        "source": "where the target class comes from: knn (nearest training features) or mc-dropout",
        "mode": "edit (latent edit toward the target until the classifier predicts it) or relabel (predict it)",
        "k": "knn: neighbours that vote",
        "layer": "knn: the classifier's hidden layer whose features are compared",
        "passes": "mc-dropout: dropout samples that vote",
        "min_votes": "fewest votes for the target class; fewer: no edit",
        "lr": "Adam learning rate on the latent",
        "max_steps": "step cap per sample",
    }
    option_ranges = {"k": "[1, inf)", "passes": "[1, inf)", "min_votes": "[1, inf)", "lr": "(0, inf)"}

    def __init__(
        self,
        source: str = "knn",
        mode: str = "edit",
        k: int = 10,
        layer: str = "fc_layer.4",
        passes: int = 20,
        min_votes: int = 3,
        lr: float = 0.1,
        max_steps: int = 200,
    ):
        where = f"corrector {self.name!r}"
        if source not in SOURCES:
            raise UserError(f"{where}: source must be one of {', '.join(SOURCES)}, got {source!r}")
        if mode not in MODES:
            raise UserError(f"{where}: mode must be one of {', '.join(MODES)}, got {mode!r}")
        for key, value in {"k": k, "passes": passes, "min_votes": min_votes, "max_steps": max_steps}.items():
            require_count(self.name, key, value)
        if not lr > 0:
            raise UserError(f"{where}: lr must be > 0, got {lr}")
        self.source, self.mode, self.k, self.layer, self.passes = source, mode, k, layer, passes
        self.min_votes, self.lr, self.max_steps = min_votes, lr, max_steps
        self.uses_generator = mode == "edit"

    def correct(self, ctx, images):
        from probebench.plugins.correctors._class_aware import class_target

        return class_target(ctx, images, self)


class LatentShrink:
    """Flow purification: z' = ``factor`` * G^-1(x), one step toward the mode
    of the flow's N(0, I) base (higher likelihood), decoded. Class-blind: it
    may help where a corruption pushed an image off the clean manifold."""

    name = "latent-shrink"
    version = "1"
    uses_generator = True
    option_help = {"factor": "latent scale in (0, 1): 1 keeps the image, smaller moves toward the flow's mode"}
    option_ranges = {"factor": "(0, 1)"}

    def __init__(self, factor: float = 0.8):
        if not 0 < factor < 1:
            raise UserError(f"corrector {self.name!r}: factor must lie in (0, 1), got {factor}")
        self.factor = factor

    def correct(self, ctx, images):
        from probebench.plugins.correctors._class_aware import latent_shrink

        return latent_shrink(ctx, images, self.factor)


@hookimpl
def register_correctors():
    return [ClassTarget, LatentShrink]
