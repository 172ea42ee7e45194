"""``glow`` and ``realnvp``: multiscale normalizing flows on images.

Both build an ``ImageFlow`` (``probebench/plugins/generators/_flow_nets.py``) with
``encode(x) -> z`` (images [N,C,H,W] in [0,1] -> latents [N, C*H*W], N(0, I)
under the model), ``decode(z) -> x`` (in [0,1], straight-through clamp),
``log_prob(x)`` (nats of the dequantised image, per sample) and
``bits_per_dim(x)``. Training (``probebench/pipeline/generate.py``) reads the
attributes ``epochs``, ``lr``, ``batch_size`` and ``warmup`` set here.
"""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl

_SHARED_HELP = {
    "levels": "multiscale levels (each squeezes 2x2 pixels into channels; H and W must be multiples of 2^levels)",
    "blocks": "flow steps per level",
    "hidden": "hidden channels of each coupling network",
    "epochs": "training epochs over the training split",
    "lr": "peak Adam learning rate (linear warm-up, then cosine decay)",
    "batch_size": "training batch size",
    "warmup": "learning-rate warm-up steps",
    "alpha": "logit pre-transform: logit(alpha + (1 - 2 alpha) y) of the dequantised pixel y",
    "max_log_scale": "bound b on every coupling's log-scale (scales lie in [e^-b, e^b])",
}


class _FlowGenerator:
    version = "1"
    option_ranges = {
        **{k: "[1, inf)" for k in ("levels", "blocks", "hidden", "epochs", "batch_size")},
        "lr": "(0, inf)",
        "warmup": "[0, inf)",
        "alpha": "(0, 0.5)",
        "max_log_scale": "(0, inf)",
    }

    def _set(
        self,
        levels: int,
        blocks: int,
        hidden: int,
        epochs: int,
        lr: float,
        batch_size: int,
        warmup: int,
        alpha: float,
        max_log_scale: float,
    ) -> None:

        for key, value in (
            ("levels", levels),
            ("blocks", blocks),
            ("hidden", hidden),
            ("epochs", epochs),
            ("batch_size", batch_size),
        ):
            if value < 1:
                raise UserError(f"generator {self.name!r}: option {key!r} must be a positive integer, got {value}")
        if not lr > 0:
            raise UserError(f"generator {self.name!r}: option 'lr' must be positive, got {lr}")
        if warmup < 0:
            raise UserError(f"generator {self.name!r}: option 'warmup' must be >= 0, got {warmup}")
        if not 0 < alpha < 0.5:
            raise UserError(f"generator {self.name!r}: option 'alpha' must lie in (0, 0.5), got {alpha}")
        if not max_log_scale > 0:
            raise UserError(f"generator {self.name!r}: option 'max_log_scale' must be positive, got {max_log_scale}")
        self.levels, self.blocks, self.hidden = levels, blocks, hidden
        self.epochs, self.lr, self.batch_size, self.warmup = epochs, lr, batch_size, warmup
        self.alpha, self.max_log_scale = alpha, max_log_scale


class Glow(_FlowGenerator):
    """Glow (Kingma & Dhariwal 2018) from normflows: per level a squeeze, then
    ``blocks`` x (actnorm, invertible 1x1 convolution, affine coupling), then
    half the channels are factored out. Coupling log-scales are
    bounded, ``max_log_scale * tanh(s / max_log_scale)``, so latent
    optimisation cannot blow decoded values up through a scale (normflows'
    default sigmoid map divides when decoding). ActNorm initialises from the
    first training batch. Before its latents leave, each level applies a
    learned per-element affine (normflows ``AffineConstFlow``)."""

    name = "glow"
    option_help = dict(_SHARED_HELP)

    def __init__(
        self,
        levels: int = 2,
        blocks: int = 4,
        hidden: int = 64,
        epochs: int = 24,
        lr: float = 3e-3,
        batch_size: int = 64,
        warmup: int = 200,
        alpha: float = 0.05,
        max_log_scale: float = 2.0,
    ):
        self._set(levels, blocks, hidden, epochs, lr, batch_size, warmup, alpha, max_log_scale)

    def build(self, shape):
        from probebench.plugins.generators._flow_nets import ImageFlow, build_glow, check_shape

        shape = check_shape(shape, self.levels, self.name)
        flow, latent_shapes = build_glow(shape, self.levels, self.blocks, self.hidden, self.max_log_scale)
        return ImageFlow(flow, shape, latent_shapes, self.alpha)


class RealNVP(_FlowGenerator):
    """RealNVP (Dinh et al. 2017) without batch norm, actnorm or 1x1 convs: per
    level ``blocks`` checkerboard-mask affine couplings, a squeeze, ``blocks``
    channel-mask couplings, then half the channels are factored out; the last
    level ends with ``blocks`` more checkerboard couplings, and every level a
    learned per-element affine. Log-scales are bounded:
    ``max_log_scale * tanh(s / max_log_scale)``."""

    name = "realnvp"
    option_help = {**_SHARED_HELP, "blocks": "couplings per mask type and level"}

    def __init__(
        self,
        levels: int = 2,
        blocks: int = 2,
        hidden: int = 32,
        epochs: int = 24,
        lr: float = 3e-3,
        batch_size: int = 64,
        warmup: int = 200,
        alpha: float = 0.05,
        max_log_scale: float = 2.0,
    ):
        self._set(levels, blocks, hidden, epochs, lr, batch_size, warmup, alpha, max_log_scale)

    def build(self, shape):
        from probebench.plugins.generators._flow_nets import ImageFlow, build_realnvp, check_shape

        shape = check_shape(shape, self.levels, self.name)
        flow, latent_shapes = build_realnvp(shape, self.levels, self.blocks, self.hidden, self.max_log_scale)
        return ImageFlow(flow, shape, latent_shapes, self.alpha)


@hookimpl
def register_generators():
    return [Glow, RealNVP]
