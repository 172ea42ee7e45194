"""The 12 CURE-TSR challenge types as corruptions ``cure-<type>``, levels 1..5.

CURE-TSR (Temel et al., 2017) made its challenging conditions with video
effects software; these are parametric re-creations of the same twelve
effects, vectorised in torch over the batch, for 1- or 3-channel images of any
size (spatial strengths scale with the image side). They are deterministic
given the ``torch.Generator`` and get stronger with the level. The order of
``CHALLENGES`` is CURE-TSR's challenge code 01..12 (00 = no challenge), which
the ``cure-tsr`` dataset uses to name its pre-corrupted cells the same way.
"""

from __future__ import annotations

from probebench.hookspecs import hookimpl
from probebench.plugins.corruptions import camel, family_member

# (type, what the corruption does) in CURE-TSR challenge-code order 01..12.
CHALLENGES: tuple[tuple[str, str], ...] = (
    (
        "decolorization",
        "Blends toward grey (20% .. 100% of the way). The identity on 1-channel images, which have no colour to lose.",
    ),
    ("lens-blur", "Out-of-focus lens: a disk (bokeh) blur of radius 0.6 .. 2.6 px at 32 px side."),
    (
        "codec-error",
        "Block-DCT coding with coarse quantisation (step 0.04 .. 0.32) and 2% .. 30% of blocks reduced to their mean.",
    ),
    ("darkening", "Scales brightness by 0.75 .. 0.18."),
    ("dirty-lens", "Soft brown blotches of dirt; coverage and opacity (0.25 .. 0.85) grow with level."),
    ("exposure", "Over-exposure: brightening curve 1-(1-x)^k, k = 1.5 .. 4, over a black level lifted to 0.05 .. 0.4."),
    ("gaussian-blur", "Gaussian blur of sigma 0.5 .. 2.0 px at 32 px side."),
    ("noise", "Additive Gaussian noise of std 0.04 .. 0.26."),
    ("rain", "Bright slanted streaks (0.6% .. 4.5% of pixels start one) over a dimmed scene."),
    ("shadow", "A straight shadow band of random direction and width, darkness 0.2 .. 0.9."),
    ("snow", "A white veil (5% .. 30%) and soft flakes on 1% .. 7% of pixels."),
    ("haze", "Atmospheric scattering toward a grey-white airlight over a random depth map, extinction 0.3 .. 1.8."),
)
CHALLENGE_NAMES: tuple[str, ...] = tuple(f"cure-{kind}" for kind, _ in CHALLENGES)


class CureCorruption:
    """Base of the ``cure-*`` corruptions: ``effect`` names the function in
    ``probebench.plugins.corruptions._cure_ops``."""

    effect = ""
    version = "1"

    def __call__(self, images, severity: int, generator):
        from probebench.plugins.corruptions._cure_ops import apply

        return apply(self.effect, images, severity, generator)


CORRUPTIONS: list[type] = [
    family_member(
        CureCorruption, f"Cure{camel(kind, '-')}", name=f"cure-{kind}", effect=kind, __doc__=f"CURE-TSR {kind}: {doc}"
    )
    for kind, doc in CHALLENGES
]


@hookimpl
def register_corruptions():
    return CORRUPTIONS
