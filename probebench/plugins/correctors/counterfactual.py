"""Counterfactual correctors: edit an image without labels so a miss may become a hit.

The contracts they rely on (``ctx.generator``, ``ctx.prober``,
``ctx.prober_hit_level``) are defined in ``probebench/pipeline/correct.py``.
The torch code lives in ``probebench/plugins/correctors/_engine.py`` and is imported only
when a corrector runs.

Every corrector works on a whole batch with a per-sample stop and a step cap:
a sample that meets its stop rule is frozen from that step on. Stop rules
(option ``stop``):

- ``prober``: P(hit) of the edited image reaches the stop level, by default
  the median prober output on validation hits (``prober_hit_level``), or the
  absolute ``threshold`` option. Relative to real hits, so it fires even
  though a prober trained with per-sample weights and label smoothing 0.2
  aims at 0.9 (an absolute 0.92, the reference's rule, is reached by only
  5-29% of real test hits on mnist-5k; the reference's own prober, trained
  with torch's ``weight=``, puts its hits near 0.69).
- ``flip``: the classifier's prediction differs from its prediction on the
  original image (the edit crossed a decision boundary).
- ``either``: whichever comes first.
"""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl

_STOP_HELP = (
    "when a sample stops: 'prober' (P(hit) >= the stop level), 'flip' (the classifier's prediction changed) or 'either'"
)
_THRESHOLD_HELP = (
    "absolute P(hit) stop level; default: the median prober output on validation hits (ctx.prober_hit_level)"
)


def _auto_stop(stop: str, target: str) -> str:
    """``stop = "auto"`` follows the target: the prober's stop rule for ``prober``, a flip for ``runner-up``."""
    return stop if stop != "auto" else ("prober" if target == "prober" else "flip")


def _check(
    name: str,
    *,
    max_steps: int,
    stop: str,
    allowed_stops=("prober", "flip", "either"),
    positive: dict[str, float] = (),
    threshold: float | None = None,
    target: str | None = None,
) -> None:

    if max_steps < 1:
        raise UserError(f"{name}: max_steps must be >= 1, got {max_steps}")
    if stop not in allowed_stops:
        raise UserError(f"{name}: stop must be one of {', '.join(allowed_stops)}, got {stop!r}")
    for key, value in dict(positive).items():
        if not value > 0:
            raise UserError(f"{name}: {key} must be > 0, got {value}")
    if threshold is not None and not 0 < threshold < 1:
        raise UserError(f"{name}: threshold is a probability in (0, 1), got {threshold}")
    if target is not None and target not in ("prober", "runner-up"):
        raise UserError(f"{name}: target must be 'prober' or 'runner-up', got {target!r}")


class ProberLatent:
    """Prober-guided latent edit (Probing Network Decisions, ICPRAI 2024).

    Encode z = G^-1(x) with the flow, then Adam on z minimising the
    cross-entropy of prober(clamp(G(z), 0, 1)) toward *hit* (-log P(hit)),
    until the stop rule fires or ``max_steps``. The reference stops at
    P(hit) > 0.92 or 5000 steps (lr 0.1) and edits one image at a time; here
    the stop is relative to validation hits and the batch runs with a
    per-sample stop.
    """

    name = "prober-latent"
    version = "2"
    uses_generator = True
    option_help = {
        "lr": "Adam learning rate on the latent",
        "threshold": _THRESHOLD_HELP,
        "max_steps": "step cap per sample",
        "stop": _STOP_HELP,
    }
    option_ranges = {"lr": "(0, inf)", "threshold": "(0, 1)", "max_steps": "[1, inf)"}

    def __init__(self, lr: float = 0.1, threshold: float | None = None, max_steps: int = 500, stop: str = "prober"):
        _check(self.name, max_steps=max_steps, stop=stop, positive={"lr": lr}, threshold=threshold)
        self.lr, self.threshold, self.max_steps, self.stop = lr, threshold, max_steps, stop

    def correct(self, ctx, images):
        from probebench.plugins.correctors._engine import prober_latent

        return prober_latent(
            ctx, images, lr=self.lr, threshold=self.threshold, max_steps=self.max_steps, stop=self.stop
        )


class PixelProber(ProberLatent):
    """Baseline: the ``prober-latent`` objective optimised directly on the
    pixels (Adam on x, clamped to [0, 1]); no generator. Shows what the flow's
    latent space adds."""

    name = "pixel-prober"
    version = "2"
    uses_generator = False
    option_help = {**ProberLatent.option_help, "lr": "Adam learning rate on the pixels"}

    def __init__(self, lr: float = 0.01, threshold: float | None = None, max_steps: int = 500, stop: str = "prober"):
        super().__init__(lr, threshold, max_steps, stop)

    def correct(self, ctx, images):
        from probebench.plugins.correctors._engine import prober_latent

        return prober_latent(
            ctx,
            images,
            lr=self.lr,
            threshold=self.threshold,
            max_steps=self.max_steps,
            stop=self.stop,
            pixel_space=True,
        )


class ConfidenceAscent:
    """Boundary crossing, option 1 (classifier-agnostic draft):
    z <- z + eta * grad f(G(z)) from z_0 = G^-1(x).

    ``target`` chooses f: ``prober`` (P(hit)) or ``runner-up``, the
    classifier's probability of the class it ranked second on the original
    image — the label-free stand-in for the draft's target class C (ascending
    the *top* class's probability would move away from the boundary, never
    across it). ``normalize`` takes steps of length eta along the gradient
    direction, which does not depend on the gradient's scale; with
    ``normalize = false`` the step is the literal eta * grad f. The default
    stop follows the target: ``prober`` for the prober, ``flip`` for runner-up.
    """

    name = "confidence-ascent"
    version = "2"
    uses_generator = True
    option_help = {
        "eta": "step size",
        "target": "f to ascend: 'prober' or 'runner-up'",
        "normalize": "step eta along grad f / ||grad f|| (false: eta * grad f)",
        "threshold": _THRESHOLD_HELP,
        "max_steps": "step cap per sample",
        "stop": _STOP_HELP + "; 'auto' follows the target",
    }

    def __init__(
        self,
        eta: float = 0.5,
        target: str = "prober",
        normalize: bool = True,
        threshold: float | None = None,
        max_steps: int = 500,
        stop: str = "auto",
    ):
        _check(
            self.name,
            max_steps=max_steps,
            stop=stop,
            allowed_stops=("auto", "prober", "flip", "either"),
            positive={"eta": eta},
            threshold=threshold,
            target=target,
        )
        self.eta, self.target, self.normalize = eta, target, normalize
        self.threshold, self.max_steps = threshold, max_steps
        self.stop = _auto_stop(stop, target)

    def correct(self, ctx, images):
        from probebench.plugins.correctors._engine import confidence_ascent

        return confidence_ascent(
            ctx,
            images,
            eta=self.eta,
            target=self.target,
            normalize=self.normalize,
            threshold=self.threshold,
            max_steps=self.max_steps,
            stop=self.stop,
        )


class MonotonePath:
    """Boundary crossing, option 2 (classifier-agnostic draft): a trajectory
    z_1..z_T (Adam) minimising sum_t |f(G(z_t)) - target_t| + lam * sum_t ||z_t - z_0||
    with z_0 = G^-1(x): monotone in f and close to the source's encoding.

    target_t = f(x) + (goal - f(x)) * t/T, the draft's t/T when f(x) = 0 and
    goal = 1; ``goal`` defaults to the stop level for the prober (its outputs
    never reach 1 under label smoothing) and 1 for ``runner-up``. A sample
    stops when its endpoint G(z_T) meets the stop rule. Returns the endpoint as
    the edited image; the whole decoded path is in ``Correction.details['path']``
    [N, T, C, H, W] and is saved with the run's tensors.
    """

    name = "monotone-path"
    version = "2"
    uses_generator = True
    option_help = {
        "length": "T, points on the path",
        "lam": "weight of the identity term ||z_t - z_0||",
        "lr": "Adam learning rate on the path",
        "target": "f: 'prober' or 'runner-up'",
        "goal": "value of f the path climbs to (default: stop level / 1)",
        "threshold": _THRESHOLD_HELP,
        "max_steps": "step cap per sample",
        "stop": _STOP_HELP + "; 'auto' follows the target",
    }

    def __init__(
        self,
        length: int = 8,
        lam: float = 0.05,
        lr: float = 0.1,
        target: str = "prober",
        goal: float | None = None,
        threshold: float | None = None,
        max_steps: int = 300,
        stop: str = "auto",
    ):

        _check(
            self.name,
            max_steps=max_steps,
            stop=stop,
            allowed_stops=("auto", "prober", "flip", "either"),
            positive={"lr": lr, "length": length},
            threshold=threshold,
            target=target,
        )
        if lam < 0:
            raise UserError(f"{self.name}: lam must be >= 0, got {lam}")
        if goal is not None and not 0 < goal <= 1:
            raise UserError(f"{self.name}: goal is a value of f in (0, 1], got {goal}")
        self.length, self.lam, self.lr, self.target, self.goal = length, lam, lr, target, goal
        self.threshold, self.max_steps = threshold, max_steps
        self.stop = _auto_stop(stop, target)

    def correct(self, ctx, images):
        from probebench.plugins.correctors._engine import monotone_path

        return monotone_path(
            ctx,
            images,
            length=self.length,
            lam=self.lam,
            lr=self.lr,
            target=self.target,
            goal=self.goal,
            threshold=self.threshold,
            max_steps=self.max_steps,
            stop=self.stop,
        )


class LatentNoise:
    """Baseline: a random latent step of the same size as the prober edit.

    z' = G^-1(x) + r * u, u a uniformly random unit direction (seeded by the
    run seed), r = ||z_prober - z_0||, the latent distance ``prober-latent``
    travels on the same image with the same lr/threshold/max_steps/stop (run
    internally, so this costs one prober-latent run). Images prober-latent
    leaves alone (r = 0) stay unchanged. A fixed ``norm`` replaces the matched
    r. If random steps of that size correct as many misses, the prober's
    direction does not matter.
    """

    name = "latent-noise"
    version = "2"
    uses_generator = True
    option_help = {
        "norm": "fixed latent step length (default: matched per image to prober-latent)",
        "lr": "lr of the matched prober-latent run",
        "threshold": _THRESHOLD_HELP,
        "max_steps": "step cap of the matched prober-latent run",
        "stop": _STOP_HELP,
    }

    def __init__(
        self,
        norm: float | None = None,
        lr: float = 0.1,
        threshold: float | None = None,
        max_steps: int = 500,
        stop: str = "prober",
    ):
        _check(self.name, max_steps=max_steps, stop=stop, positive={"lr": lr}, threshold=threshold)
        if norm is not None:
            _check(self.name, max_steps=max_steps, stop=stop, positive={"norm": norm})
        self.norm, self.lr, self.threshold, self.max_steps, self.stop = norm, lr, threshold, max_steps, stop

    def correct(self, ctx, images):
        from probebench.plugins.correctors._engine import latent_noise

        return latent_noise(
            ctx, images, norm=self.norm, lr=self.lr, threshold=self.threshold, max_steps=self.max_steps, stop=self.stop
        )


@hookimpl
def register_correctors():
    return [ProberLatent, ConfidenceAscent, MonotonePath, PixelProber, LatentNoise]
