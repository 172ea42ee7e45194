"""Peers from test-time adaptation: methods that change the classifier's
*predictions* rather than the images (``Correction.predictions``), judged by
the same correction metrics and the same label-free loop as the image
editors. The torch code is in ``_adaptation.py``, imported only when one runs.

- ``tta``: test-time augmentation, the mean softmax over label-preserving
  views (the image and its shifts by ``shift`` pixels in the four directions).
  Per sample.
- ``tent``: TENT (Wang et al., ICLR 2021), entropy minimisation on the test
  cell. TENT adapts the affine parameters of normalisation layers; the
  built-in ``cnn`` has none, so there it adapts the **biases of the Linear
  layers** (the per-feature shift a normalisation layer's beta would be), and
  a network with normalisation layers adapts their affine weight and bias.
  Not per sample: the adapted weights depend on the whole cell
  (``per_sample = False``), as TENT's do on its test batches.
"""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl
from probebench.plugins.correctors._options import require_count


class AugmentedPredictions:
    """Predict with the mean softmax over the image and its shifts by ``shift``
    pixels (up, down, left, right; zero-filled): 5 views, no generator, no edit."""

    name = "tta"
    version = "1"
    uses_generator = False
    option_help = {"shift": "pixels each shifted view moves the image (digits stay digits under small shifts)"}
    option_ranges = {"shift": "[1, inf)"}

    def __init__(self, shift: int = 1):
        self.shift = require_count(self.name, "shift", shift)

    def correct(self, ctx, images):
        from probebench.plugins.correctors._adaptation import augmented_predictions

        return augmented_predictions(ctx, images, self.shift)


class Tent:
    """Entropy minimisation on the test cell (TENT): Adam with ``lr`` on the
    normalisation layers' affine parameters, or, in a network without them,
    on the biases of its Linear layers, for ``epochs`` passes over the cell in
    batches of ``ctx.batch_size``; then predict with the adapted copy (the
    classifier itself is never changed)."""

    name = "tent"
    version = "1"
    uses_generator = False
    per_sample = False
    option_help = {"lr": "Adam learning rate of the adapted parameters", "epochs": "passes over the test cell"}
    option_ranges = {"lr": "(0, inf)", "epochs": "[1, inf)"}

    def __init__(self, lr: float = 1e-3, epochs: int = 1):
        if not lr > 0:
            raise UserError(f"corrector {self.name!r}: lr must be > 0, got {lr}")
        self.lr, self.epochs = lr, require_count(self.name, "epochs", epochs)

    def correct(self, ctx, images):
        from probebench.plugins.correctors._adaptation import entropy_adapted_predictions

        return entropy_adapted_predictions(ctx, images, self.lr, self.epochs)


@hookimpl
def register_correctors():
    return [AugmentedPredictions, Tent]
