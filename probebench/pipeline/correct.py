"""Correction stage: edit test images without labels, re-classify, and judge with labels.

Contracts
---------
A corrector (``probebench.kinds.Corrector``) gets ``correct(ctx, images) ->
Correction(images, steps, details)``. ``images`` are float [N,C,H,W] in [0,1]
on the CPU; it returns edited images of the same shape in [0,1] (CPU), the
optimisation steps each sample took (int [N]; a sample with 0 steps must come
back unchanged) and optional per-sample ``details``. It never sees a label.
A method that changes predictions rather than images (test-time
augmentation or adaptation) also returns ``predictions`` (int [N]): the
stage judges those instead of re-classifying the images.
The edit of one image must not depend on the other images in the batch,
except for a class that declares ``per_sample = False`` (test-time
adaptation on the whole cell: its results depend on the cell). A
corrector class may set ``uses_generator = False`` (it works in pixel space);
otherwise the stage runs it once per generator. For each run the stage hands
it a new ``Context`` (``dataclasses.replace`` of the scorers' one; a Context
is frozen, and nothing a component does changes it) with these fields set:

- ``ctx.classifier``: the trained ``nn.Module`` (eval mode), images -> logits;
  ``ctx.device``, ``ctx.seed``, ``ctx.batch_size`` (the corrector's chunk size).
- ``ctx.generator``: an invertible flow, any object with ``encode(x) -> z``
  and ``decode(z) -> x``. ``x`` is float [N,C,H,W] in [0,1] on ``ctx.device``;
  ``z`` is a tensor with batch dimension first, or a list/tuple of such
  tensors (multiscale flows); ``decode(encode(x)) == x`` up to float error;
  both differentiable, per-sample (eval mode). Correctors clamp decoded
  pixels to [0,1] and treat a non-finite decode as divergence. One of the
  suite's generators (a corrector spec's ``generator`` option pins one);
  None for a corrector with ``uses_generator = False``.
- ``ctx.prober``: a callable mapping images [N,C,H,W] in [0,1] on
  ``ctx.device`` to P(hit) float [N] in [0,1], differentiable with respect to
  the images, using no label and no other sample of the batch: the ``p_hit``
  of a scorer that declares the ``probebench.kinds.Guide`` capability
  (``guides_correctors = True``; the built-in ``prober`` scorer does). A
  corrector spec's ``prober`` option names the scorer (by suite label) that
  guides it and flags images for its loop; without it, the suite's first
  scorer with the capability.
- ``ctx.prober_hit_level``: float, the median P(hit) the prober gives the
  validation split's hits. The default stop level of the prober stop rule
  (see probebench/plugins/correctors/counterfactual.py): relative to real
  hits, so it fires although label smoothing 0.2 caps the prober near 0.9.
- ``ctx.prober_threshold``: float, the label-free loop flags an image as a
  likely miss when P(hit) < this. A corrector spec's ``flag`` option says
  how: ``youden`` (default) chooses it on validation data, never on test
  (``flag_threshold`` below: Youden's J for detecting misses); ``argmax`` is
  0.5, the prober's own decision, as the reference selects images.

The stage chooses both numbers per guiding scorer (``calibrated``) on the
suite's validation split (``validation = N`` in the suite: training images
nothing trains on), or, without one, on the classifier's training split, and
says so: optimistic, since the classifier fits its training images. A
``Guide`` given with both numbers keeps them. ``run.json`` records both per
seed under ``correction`` with where they came from, and under
``correction`` -> ``correctors`` the flag rule, flag threshold and stop level
each corrector actually ran with (a corrector's own ``threshold`` attribute,
an absolute stop level, replaces the guide's).

What the stage measures
-----------------------
Every corrector edits every image of the test cell once, except that a
corrector whose loop flags by ``argmax`` edits only the images its loop
flags, as the reference's ``generate_counterfactual.py`` edits only the
images its prober calls a miss (the others keep their prediction with 0
steps, exactly what the loop does with them, so every rate below stays
exact; a miss it leaves alone counts as not corrected). Because an edit
depends only on its own image, the three views come from that one pass:
(a) the true misses, (b) the hits, and (c) the label-free loop "flag with the
prober, edit the flagged images, re-classify". Labels only judge (the
metrics are computed in ``probebench/pipeline/evaluate.py``):

- ``correction-rate``: true misses whose edit the classifier gets right / true
  misses (all of them are handed to the corrector, the flagged ones only
  with ``argmax``; one it leaves alone counts as not corrected);
- ``correction-rate-flagged``: the same over the misses the loop flags (the
  reference's "true miss" denominator: it edits only what its prober flags);
- ``break-rate``: hits whose edit the classifier gets wrong / hits;
- ``break-rate-flagged``: the same over the hits the loop flags (the hits the
  loop would actually edit);
- ``loop-accuracy``: accuracy after the loop (unflagged images keep their
  prediction);
- ``abstain-selective-accuracy`` and ``abstain-coverage``: the honest
  baseline of the loop: instead of editing the flagged images, abstain on
  them; the accuracy on the images still answered, and their share;
- ``net-accuracy-gain``: accuracy after the loop minus accuracy before, over
  the whole cell (unflagged images keep their prediction);
- ``tuned-net-accuracy-gain``: the same with the loop threshold that gave this
  corrector the largest gain on the validation split (``tune``: the
  corrector edits the validation images once; ties flag the fewest images, so
  a corrector that never helps flags nothing). Only with a validation split;
  ``run.json`` records the thresholds under ``correction`` ->
  ``tuned_thresholds``;
- ``edit-size``: mean L2 pixel distance ||x' - x|| over the true misses;
- ``median-steps``, ``p90-steps``: steps over the true misses;
- ``images-per-second``: images of the cell / wall seconds of ``correct``.

Rates, the gain and the edit size carry percentile-bootstrap intervals over
the samples they average (``probebench.evaluate``); the others have none.
Artifacts in ``<run>/corrections/``: per (method, seed, cell) a ``.pt`` of
tensors, loadable with ``torch.load(weights_only=True)``: ``index`` of the
samples the corrector changed (steps > 0) and their ``edited`` images (the
rest are the cell's images unchanged), per-sample ``steps``, ``labels``,
``prediction_before``/``_after``, ``p_hit``, ``flagged``, the threshold and
stop level, ``details.*`` (a path only for changed samples, float16), the
``method`` and ``cell`` (its tag, ``seed0_none-0``) and the per-sample loop
gains the net-gain rows average (``loop_gain``, ``tuned_loop_gain``: +1 a
miss fixed, -1 a hit broken; ``probebench.report.correction`` pools them
over seeds); per method one PNG grid of original / edited / delta for
corrected misses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from probebench.cache import content_digest, hash_key
from probebench.console import console, running, task
from probebench.errors import UserError
from probebench.kinds import uses_generator
from probebench.paths import safe_part
from probebench.pipeline.attack import cell_images
from probebench.pipeline.cells import Cell
from probebench.pipeline.evaluate import Outcome, cached_outcome_rows, loop_gain_per_sample
from probebench.pipeline.failures import CallInfo
from probebench.pipeline.generate import TrainedFlow
from probebench.pipeline.stage import Run

if TYPE_CHECKING:
    from probebench.cache import ArtifactStore
    from probebench.pipeline.context import Context
    from probebench.registry import Registry
    from probebench.suite import Bootstrap, ComponentSpec

Prober = Callable[[torch.Tensor], torch.Tensor]  # images -> P(hit), differentiable
Record = dict[str, Any]  # what one corrector made of one set of images (see ``edit``)
OnFailure = Callable[[str, Exception], None]  # (method, what it raised)

PIN_KEY = "generator"  # a corrector spec's option naming the one generator it runs with
GUIDE_KEY = "prober"  # ... and the scorer (a suite label) that guides it and flags images for the loop
FLAG_KEY = "flag"  # ... and how the loop flags images: "youden" (the guide's threshold) or "argmax" (P(hit) < 0.5)
ARGMAX_THRESHOLD = 0.5  # the prober's own decision: "miss" when P(hit) < P(miss)


# -- thresholds from labelled held-out data ------------------------------------
def flag_threshold(p_hit: Any, hit: Any) -> float:
    """The threshold t maximising Youden's J (TPR - FPR) of flagging misses by
    P(hit) < t; ties go to the smallest t (fewest images flagged)."""
    p = np.asarray(p_hit, dtype=float)
    hit = np.asarray(hit, dtype=bool)
    if hit.all():
        return float(p.min())  # nothing to catch: flag nothing
    if not hit.any():
        return float(np.nextafter(p.max(), np.inf))  # everything is a miss: flag all
    candidates = np.append(np.unique(p), np.nextafter(p.max(), np.inf))
    caught = np.searchsorted(np.sort(p[~hit]), candidates, side="left") / (~hit).sum()
    false = np.searchsorted(np.sort(p[hit]), candidates, side="left") / hit.sum()
    return float(candidates[int(np.argmax(caught - false))])


def gain_threshold(p_hit: Any, gain: Any) -> float:
    """The threshold t maximising the loop's total gain sum(gain[p_hit < t])
    (gain: +1 a miss fixed, -1 a hit broken, 0 otherwise, per sample); ties go
    to the smallest t (fewest images flagged), so a corrector that never helps
    gets a threshold that flags nothing."""
    p = np.asarray(p_hit, dtype=float)
    gain = np.asarray(gain, dtype=float)
    if len(p) == 0:
        return float("-inf")
    order = np.argsort(p, kind="stable")
    p, total = p[order], np.concatenate([[0.0], np.cumsum(gain[order])])
    # flagging the first k sorted samples is possible only where p changes (ties flag together)
    cuts = np.flatnonzero(np.concatenate([[True], p[1:] != p[:-1], [True]]))
    best = cuts[int(np.argmax(total[cuts]))]
    return float(p[0]) if best == 0 else float(np.nextafter(p[best - 1], np.inf))


def hit_level(p_hit: Any, hit: Any) -> float:
    """The median P(hit) of the hits: the default stop level."""
    p = np.asarray(p_hit, dtype=float)[np.asarray(hit, dtype=bool)]
    return float(np.median(p)) if len(p) else float("nan")


@torch.no_grad()
def prober_outputs(ctx: Context, prober: Prober, images: torch.Tensor) -> torch.Tensor:
    """P(hit) [N] on the CPU, batched."""
    parts = [
        prober(images[s : s + ctx.batch_size].to(ctx.device)).detach().cpu()
        for s in range(0, len(images), ctx.batch_size)
    ]
    return torch.cat(parts) if parts else torch.empty(0)


def calibrate(
    ctx: Context, prober: Prober, images: torch.Tensor, labels: torch.Tensor, limit: int = 5000
) -> tuple[float, float]:
    """(prober_threshold, prober_hit_level) from labelled images (the first ``limit``)."""
    images, labels = images[:limit], labels[:limit]
    hit = (ctx.forward(images)[0].argmax(dim=1) == labels).numpy()
    p = prober_outputs(ctx, prober, images).numpy()
    return flag_threshold(p, hit), hit_level(p, hit)


# -- setting the correctors up ------------------------------------------------------
@dataclass(frozen=True)
class Guide:
    """A prober guiding correctors: ``prober`` maps images to a differentiable
    P(hit) (a ``Guide`` scorer's ``p_hit``); ``prober_key`` is the cache key of
    the scorer it comes from ("": its corrections are not cached);
    ``threshold`` (the loop's flag threshold) and ``level`` (the stop level)
    are chosen by ``calibrated`` when None."""

    prober: Prober
    prober_key: str = ""
    threshold: float | None = None
    level: float | None = None
    calibrated_on: str = "given"

    def key(self, seed: int) -> str:
        """What the corrections it guides depend on: the prober, threshold, level and seed."""
        if not self.prober_key or self.threshold is None or self.level is None:
            return ""
        return hash_key("correction-guide", self.prober_key, float(self.threshold), float(self.level), seed)

    def calibration(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "stop_level": self.level, "calibrated_on": self.calibrated_on}


@dataclass
class Bound:
    """A corrector bound to the generator it runs with (None: pixel space) and
    the prober that guides it (a label of ``Setup.guides``)."""

    method: str
    corrector: Any
    generator: str | None
    key: str = ""  # what determines its edits: corrector, options, versions, generator, prober
    guide: str = ""
    tuned: float | None = None  # the loop threshold that maximised its gain on the validation split
    flag: str = "youden"  # how its loop flags images (FLAG_KEY)

    @property
    def edits_flagged_only(self) -> bool:
        """Whether the corrector sees only the images its loop flags: with
        argmax flagging, as the reference edits only what its prober calls a
        miss. An unflagged image keeps its prediction (0 steps), which is
        what the loop does with it anyway, so every rate stays exact; a
        Youden loop's corrector edits every image (the all-miss rates)."""
        return self.flag == "argmax"

    def flag_threshold(self, guide: Guide) -> float:
        """The P(hit) below which its loop flags an image."""
        if self.flag == "argmax":
            return ARGMAX_THRESHOLD
        assert guide.threshold is not None  # setup calibrated every guide
        return float(guide.threshold)

    def stop_level(self, guide: Guide) -> float:
        """The P(hit) its prober stop rule fires at: its own absolute ``threshold`` option
        when it has one, else the guide's stop level."""
        own = getattr(self.corrector, "threshold", None)
        if isinstance(own, (int, float)) and not isinstance(own, bool):
            return float(own)
        assert guide.level is not None  # setup calibrated every guide
        return float(guide.level)


@dataclass
class Setup:
    """What one seed's correction runs share."""

    bound: list[Bound]
    generators: dict[str, Any]
    guides: dict[str, Guide]
    grids: set[str] = field(default_factory=set)
    class_names: list[str] = field(default_factory=list)  # the dataset's, for the grids

    def guide_label(self, bound: Bound) -> str:
        return bound.guide or next(iter(self.guides))  # unnamed: the first prober

    def calibration(self) -> dict:
        """What run.json records of how the loop was set up: per guiding prober
        its calibrated numbers, per corrector the flag rule, flag threshold and
        stop level it actually used (``correctors``), and the tuned threshold
        per corrector, once ``tune`` has run."""
        out: dict[str, Any] = {label: guide.calibration() for label, guide in self.guides.items()}
        out["correctors"] = {b.method: self.used(b) for b in self.bound}
        tuned = {b.method: b.tuned for b in self.bound if b.tuned is not None}
        return {**out, "tuned_thresholds": tuned} if tuned else out

    def loop_flags(self, bound: Bound, p_hit: torch.Tensor) -> dict[str, Any]:
        """Which images ``bound``'s loop flags (P(hit) below its flag threshold),
        and by what rule: applied to a record after it is built or loaded, so one
        edit serves every flag rule."""
        threshold = bound.flag_threshold(self.guides[self.guide_label(bound)])
        return {"flagged": torch.as_tensor(p_hit < threshold), "threshold": threshold, "flag": bound.flag}

    def used(self, bound: Bound) -> dict[str, Any]:
        """The numbers ``bound`` ran with: its guide, flag rule, flag threshold and stop level."""
        guide = self.guides[self.guide_label(bound)]
        return {
            "prober": self.guide_label(bound),
            "flag": bound.flag,
            "flag_threshold": bound.flag_threshold(guide),
            "stop_level": bound.stop_level(guide),
        }


def calibrated(ctx: Context, label: str, guide: Guide) -> Guide:
    """``guide`` with its missing flag threshold and stop level chosen on the
    validation split (else the training split, with a warning)."""
    if guide.threshold is not None and guide.level is not None:
        return replace(guide, threshold=float(guide.threshold), level=float(guide.level))
    if ctx.val_images is not None and ctx.val_labels is not None:
        images, labels, source = ctx.val_images, ctx.val_labels, f"validation split ({len(ctx.val_labels)} images)"
    else:
        images, labels, source = ctx.train_images, ctx.train_labels, "training split"
    fit_threshold, fit_level = _calibrated_values(ctx, guide, images, labels)
    threshold = fit_threshold if guide.threshold is None else guide.threshold
    level = fit_level if guide.level is None else guide.level
    if ctx.val_labels is None:
        console.print(
            f"[yellow]correction: the suite has no validation split (add validation = N); chose "
            f"{label}'s flag threshold ({threshold:.3f}) and stop level ({level:.3f}) on the training "
            f"split, where the classifier is optimistic[/]"
        )
    return replace(guide, threshold=float(threshold), level=float(level), calibrated_on=source)


def _calibrated_values(ctx: Context, guide: Guide, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """``calibrate``'s numbers, cached as a component artifact of the classifier
    under the guide's scorer key and a digest of the images and labels (a
    warm run runs no prober over the validation split); uncached for a guide
    without a key."""
    if not guide.prober_key:
        return calibrate(ctx, guide.prober, images, labels)

    def build() -> dict[str, float]:
        threshold, level = calibrate(ctx, guide.prober, images, labels)
        return {"threshold": threshold, "level": level}

    stored = ctx.artifact("calibration", [guide.prober_key, content_digest(images, labels)], build)
    return float(stored["threshold"]), float(stored["level"])


def setup(
    correctors: tuple[ComponentSpec, ...] | list[ComponentSpec],
    registry: Registry,
    ctx: Context,
    generators: Mapping[str, TrainedFlow],
    probers: Mapping[str, Guide],
) -> Setup:
    """Create the suite's correctors for ``ctx`` (one per generator unless
    pinned with a ``generator`` option; guided by the first of ``probers``
    unless a ``prober`` option names another) and fix each guide's threshold
    and stop level."""
    if not probers or (not generators and needs_generators(correctors, registry)):
        raise UserError(
            f"correctors need a generator and a scorer that can guide them; got generators "
            f"{sorted(generators) or 'none'} and guides {sorted(probers) or 'none'}: add a generator and a "
            f"scorer with guides_correctors = True (e.g. 'prober') to the suite"
        )
    guides: dict[str, Guide] = {}
    bound = []
    for spec in correctors:
        options = dict(spec.options)
        pinned = options.pop(PIN_KEY, None)
        guide = options.pop(GUIDE_KEY, None) or next(iter(probers))
        flag = options.pop(FLAG_KEY, "youden")
        if flag not in ("youden", "argmax"):
            raise UserError(f"corrector {spec.label!r}: flag must be 'youden' or 'argmax', got {flag!r}")
        if guide not in probers:
            raise UserError(
                f"corrector {spec.label!r} names prober {guide!r}; the suite's probers: {', '.join(probers)}"
            )
        if guide not in guides:
            guides[guide] = calibrated(ctx, guide, probers[guide])
        guide_key = guides[guide].key(ctx.seed)
        corrector = registry.create("corrector", spec.name, options)
        versions = (getattr(type(corrector), "version", "1"), registry.entry("corrector", spec.name).plugin.version)
        for method, generator in _runs(spec, corrector, pinned, generators):
            generator_key = None if generator is None else generators[generator].key
            keyed = guide_key and (generator is None or generator_key)
            parts: tuple[Any, ...] = (spec.name, options, *versions, generator, generator_key, guide, guide_key)
            if flag == "argmax":  # it edits only the flagged images (Bound.edits_flagged_only); youden: every one
                parts += ("edits only the argmax-flagged images",)
            key = hash_key(*parts) if keyed else ""
            bound.append(Bound(method, corrector, generator, key, guide, flag=flag))
    return Setup(bound, {label: trained.flow for label, trained in generators.items()}, guides)


def needs_generators(correctors: Iterable[ComponentSpec], registry: Registry) -> bool:
    """Whether any of ``correctors`` edits through a generator (a flow of the suite)."""
    return any(uses_generator(registry.get("corrector", spec.name)) for spec in correctors)


def _runs(
    spec: ComponentSpec, corrector: Any, pinned: str | None, generators: Mapping[str, TrainedFlow]
) -> list[tuple[str, str | None]]:
    """(method label, generator label) of each run of a corrector."""
    if not uses_generator(corrector):
        return [(spec.label, None)]
    if pinned is not None:
        if pinned not in generators:
            raise UserError(
                f"corrector {spec.label!r} names generator {pinned!r}; the suite's generators: {', '.join(generators)}"
            )
        return [(spec.label, pinned)]
    return [(spec.label if len(generators) == 1 else f"{spec.label}@{g}", g) for g in generators]


# -- editing -----------------------------------------------------------------------
def check_predictions(correction: Any, n: int, num_classes: int) -> torch.Tensor | None:
    """A correction's own ``predictions`` (int [N] on the CPU), None when it has
    none, or a ValueError saying what is wrong."""
    predictions = getattr(correction, "predictions", None)
    if predictions is None:
        return None
    predictions = torch.as_tensor(predictions).detach().cpu()
    if predictions.shape != (n,) or predictions.is_floating_point():
        raise ValueError(
            f"returned predictions of shape {list(predictions.shape)} ({predictions.dtype}), expected int [{n}]"
        )
    if n and (predictions.min() < 0 or predictions.max() >= num_classes):
        raise ValueError(f"returned predicted classes outside 0..{num_classes - 1}")
    return predictions.long()


def check_correction(correction: Any, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(edited images, steps) on the CPU, or a ValueError saying what is wrong."""
    edited, steps = getattr(correction, "images", None), getattr(correction, "steps", None)
    if not isinstance(edited, torch.Tensor) or edited.shape != images.shape:
        got = list(edited.shape) if isinstance(edited, torch.Tensor) else type(edited).__name__
        raise ValueError(f"returned images of shape {got}, expected {list(images.shape)}")
    edited = edited.detach().cpu().float()
    if not torch.isfinite(edited).all():
        raise ValueError("returned NaN or infinite pixels")
    if edited.numel() and (edited.min() < -1e-6 or edited.max() > 1 + 1e-6):
        raise ValueError(f"returned pixels outside [0,1]: [{edited.min():.3g}, {edited.max():.3g}]")
    steps = torch.as_tensor(steps).detach().cpu()
    if steps.shape != (len(images),):
        raise ValueError(f"returned steps of shape {list(steps.shape)}, expected [{len(images)}]")
    return edited.clamp(0, 1), steps.long()


def edit(
    ctx: Context,
    state: Setup,
    bound: Bound,
    images: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor,
    p_hit: torch.Tensor,
) -> Record:
    """Run one bound corrector on ``images`` and return its record: what
    ``corrections/*.pt`` holds, plus the edit sizes and the wall seconds
    (cached per cell)."""
    guide = state.guides[state.guide_label(bound)]
    assert guide.threshold is not None and guide.level is not None  # setup calibrated every guide
    generator = None if bound.generator is None else state.generators[bound.generator]
    inputs = replace(
        ctx,
        generator=generator,
        prober=guide.prober,
        prober_threshold=bound.flag_threshold(guide),
        prober_hit_level=guide.level,
    )
    index = (p_hit < bound.flag_threshold(guide)).nonzero().squeeze(1) if bound.edits_flagged_only else None
    chosen = images if index is None else images[index]
    torch.manual_seed(ctx.seed)
    started = time.perf_counter()
    correction = bound.corrector.correct(inputs, chosen) if len(chosen) else None
    seconds = time.perf_counter() - started if correction is not None else 0.0  # 0: no speed to report
    if correction is None:  # nothing to edit: the corrector is not called
        edited, steps, own_predictions, details = chosen, torch.zeros(0, dtype=torch.long), None, {}
    else:
        edited, steps = check_correction(correction, chosen)
        own_predictions = check_predictions(correction, len(chosen), ctx.num_classes)
        details = dict(getattr(correction, "details", {}) or {})
    if index is not None:
        edited, steps, own_predictions, details = _in_place(
            index, images, predictions, edited, steps, own_predictions, details
        )
    changed = (steps > 0).nonzero().squeeze(1)  # the others are their original test image, bit for bit
    record = {
        "index": changed,
        "edited": edited[changed],
        "steps": steps,
        "labels": labels,
        "prediction_before": predictions,
        "prediction_after": ctx.forward(edited)[0].argmax(dim=1) if own_predictions is None else own_predictions,
        "predicts": own_predictions is not None,  # the corrector's own predictions, not a re-classification
        "p_hit": p_hit,
        "stop_level": bound.stop_level(guide),
        "calibrated_on": guide.calibrated_on,
        "edit_size": (edited - images).flatten(1).norm(dim=1),
        "seconds": float(seconds),
    }
    for key, value in details.items():
        if isinstance(value, torch.Tensor) and len(value) == len(steps):
            value = value.detach().cpu()
            if value.dim() > 1:  # images or paths: only the changed samples, paths in half precision
                value = value[changed].half() if value.dim() > 4 else value[changed]
            record[f"details.{key}"] = value
    return record


def _in_place(
    index: torch.Tensor,
    images: torch.Tensor,
    predictions: torch.Tensor,
    edited: torch.Tensor,
    steps: torch.Tensor,
    own_predictions: torch.Tensor | None,
    details: dict[str, Any],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """A correction of ``images[index]`` as a correction of all ``images``:
    the others unchanged with 0 steps and their own prediction, per-sample
    details zero there."""
    all_edited = images.clone()
    all_edited[index] = edited
    all_steps = torch.zeros(len(images), dtype=torch.long)
    all_steps[index] = steps
    all_predictions = None
    if own_predictions is not None:
        all_predictions = predictions.clone()
        all_predictions[index] = own_predictions
    spread = {}
    for key, value in details.items():
        if isinstance(value, torch.Tensor) and len(value) == len(index):
            whole = torch.zeros((len(images), *value.shape[1:]), dtype=value.dtype)
            whole[index] = value.detach().cpu()
            spread[key] = whole
    return all_edited, all_steps, all_predictions, spread


Cache = Callable[[Bound, Callable[[], Record]], Record]  # (bound, build) -> the stored record, or build()'s


def _edit_each(
    ctx: Context,
    state: Setup,
    images: torch.Tensor,
    labels: torch.Tensor,
    title: str,
    cache: Cache,
    on_failure: OnFailure | None,
) -> list[tuple[Bound, Record]]:
    """Every bound corrector edits ``images`` once: [(bound, record)] of those
    that did not fail; a record holds the predictions before the edit
    (``prediction_before``) and its guide's P(hit) (``p_hit``).

    ``cache(bound, build)`` returns the stored record of ``bound`` on these
    images or builds and stores it; the classifier and the guides run only
    when something is built, so a fully cached cell costs no forward pass. A
    corrector's exception goes to ``on_failure(method, exc)``, or propagates
    without one (a UserError always does)."""

    computed: dict[str | None, torch.Tensor] = {}  # None: the predictions; a guide's label: its P(hit)

    def once(label: str | None) -> torch.Tensor:
        if label not in computed:
            if label is None:
                computed[label] = ctx.forward(images)[0].argmax(dim=1)
            else:
                computed[label] = prober_outputs(ctx, state.guides[label].prober, images)
        return computed[label]

    def build(bound: Bound) -> Record:
        return edit(ctx, state, bound, images, labels, once(None), once(state.guide_label(bound)))

    done = []
    with task(title, len(state.bound)) as advance:
        for bound in state.bound:
            running(f"corrector {bound.method}")
            info = CallInfo.from_call(partial(cache, bound, partial(build, bound)))
            if info.error is None:
                done.append((bound, info.result))
            elif on_failure is None:
                raise info.error
            else:
                on_failure(bound.method, info.error)
            advance()
    return done


def _uncached(_bound: Bound, build: Callable[[], Record]) -> Record:
    return build()


def correct_images(
    ctx: Context,
    state: Setup,
    images: torch.Tensor,
    labels: torch.Tensor,
    bootstrap: Bootstrap,
    *,
    out: Path | None = None,
    tag: str = "cell",
    on_failure: OnFailure | None = None,
    cache: Cache = _uncached,
    store: ArtifactStore | None = None,
) -> list[dict[str, Any]]:
    """Run every bound corrector on ``images`` and return the metric rows
    (``method`` filled in). Writes artifacts under ``out/corrections`` when
    given; with ``store``, their pictures and the metric rows are cached there.

    ``cache(bound, build)`` returns the stored record of ``bound`` on these
    images or builds and stores it: a resumed run edits nothing twice."""
    done = _edit_each(ctx, state, images, labels, f"correct {tag}", cache, on_failure)
    rows = []
    for bound, record in done:
        record = {**record, **state.loop_flags(bound, record["p_hit"])}
        hit = (record["prediction_before"] == labels).numpy()
        tuned = None if bound.tuned is None else (record["p_hit"] < bound.tuned).numpy()
        outcome = Outcome(
            hit,
            (record["prediction_after"] == labels).numpy(),
            record["flagged"].numpy(),
            record["edit_size"].numpy(),
            record["steps"].numpy(),
            float(record["seconds"]),
            tuned,
        )
        rows += [{"method": bound.method, **row} for row in cached_outcome_rows(store, outcome, bootstrap)]
        if out is not None:
            record = {**record, **_per_sample_gains(outcome), "method": bound.method, "cell": tag}
            _save(out, bound.method, tag, state, images, record, store)
    return rows


def tune(ctx: Context, state: Setup, store: ArtifactStore | None = None, on_failure: OnFailure | None = None) -> None:
    """Set each bound corrector's ``tuned`` loop threshold: the one that
    maximises its net gain on the validation split (edited once, cached in
    ``store``). Without a validation split nothing is tuned."""
    if ctx.val_images is None or ctx.val_labels is None or not len(ctx.val_labels):
        return
    labels = ctx.val_labels

    def cache(bound: Bound, build: Callable[[], Record]) -> Record:
        if store is None or not bound.key:
            return build()
        return store.get_or_build("correction", hash_key("correction-validation", bound.key), build)

    title = "tune the loop on validation"
    for bound, record in _edit_each(ctx, state, ctx.val_images, labels, title, cache, on_failure):
        gain = (record["prediction_after"] == labels).long() - (record["prediction_before"] == labels).long()
        bound.tuned = gain_threshold(record["p_hit"].numpy(), gain.numpy())


def correct_cell(run: Run, ctx: Context, state: Setup, cell: Cell) -> list[dict[str, Any]]:
    """The tidy rows of every corrector on one test cell; each (corrector,
    cell) record is cached in the run's store."""
    images, labels = cell_images(run, ctx, cell)
    cell_key = cell.key(run.registry, ctx.classifier_key)
    state.class_names = list(run.splits.data.get("classes", []))

    def cache(bound: Bound, build: Callable[[], Record]) -> Record:
        if not bound.key:
            return build()
        return run.store.get_or_build("correction", hash_key("correction", cell_key, bound.key), build)

    def on_failure(label: str, exc: Exception) -> None:
        run.failures.record("corrector", label, "correct", cell.where(ctx.seed), exc)

    rows = correct_images(
        ctx,
        state,
        images,
        labels,
        run.suite.bootstrap,
        out=run.out,
        tag=cell.tag(ctx.seed),
        cache=cache,
        on_failure=on_failure,
        store=run.store,
    )
    keys = cell.columns(run.suite, ctx.seed)
    return [{**keys, **row} for row in rows]


def _per_sample_gains(outcome: Outcome) -> dict[str, torch.Tensor]:
    """What the loop gained on each image (+1 fixed, -1 broken, 0), with its
    flag threshold and with the tuned one: the samples the net-gain rows
    average, kept so a report can pool them over seeds
    (``probebench.report.correction``)."""
    gains = {"loop_gain": loop_gain_per_sample(outcome.hit, outcome.hit_after, outcome.flagged)}
    if outcome.tuned_flagged is not None:
        gains["tuned_loop_gain"] = loop_gain_per_sample(outcome.hit, outcome.hit_after, outcome.tuned_flagged)
    return {key: torch.as_tensor(value, dtype=torch.int8) for key, value in gains.items()}


# -- artifacts --------------------------------------------------------------------
def _save(
    out: Path,
    method: str,
    tag: str,
    state: Setup,
    images: torch.Tensor,
    record: Record,
    store: ArtifactStore | None = None,
) -> None:
    """The record's tensors, and the first time per method a grid of corrected
    misses (drawn once, then copied from ``store``: ``probebench.figures``)."""
    from probebench.cache import atomic_write, content_digest
    from probebench.figures import cached_figures, figure_key
    from probebench.report.grids import correction_grid

    folder = Path(out) / "corrections"
    payload = {k: v for k, v in record.items() if k not in ("edit_size", "seconds")}
    atomic_write(folder / f"{safe_part(method)}_{safe_part(tag)}.pt", lambda tmp: torch.save(payload, tmp))
    if method in state.grids:
        return
    state.grids.add(method)
    before, after, labels = record["prediction_before"], record["prediction_after"], record["labels"]
    corrected = ((before != labels) & (after == labels)).nonzero().squeeze(1)[:8]
    if not len(corrected):
        return
    edited = images.clone()
    edited[record["index"]] = record["edited"]
    title = f"{method}: corrected misses ({tag})"
    drawn = [images[corrected], edited[corrected], before[corrected], after[corrected], labels[corrected]]
    key = figure_key("correction-grid", title, content_digest(*drawn), state.class_names)

    def draw(paths: list[Path]) -> None:
        correction_grid(paths[0], images, edited, corrected, before, after, labels, title, state.class_names)

    cached_figures(store, key, [folder / f"{safe_part(method)}_grid.png"], draw)
