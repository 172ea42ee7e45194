"""Correction stage: edit test images without labels, re-classify, and judge with labels.

Contracts
---------
A corrector (``probebench.kinds.Corrector``) gets ``correct(ctx, images) ->
Correction(images, steps, details)``. ``images`` are float [N,C,H,W] in [0,1]
on the CPU; it returns edited images of the same shape in [0,1] (CPU), the
optimisation steps each sample took (int [N]; a sample with 0 steps must come
back unchanged) and optional per-sample ``details``. It never sees a label.
The edit of one image must not depend on the other images in the batch. A
corrector class may set ``uses_generator = False`` (it works in pixel space);
otherwise the stage runs it once per generator. It reads from ``ctx``:

- ``ctx.classifier``: the trained ``nn.Module`` (eval mode), images -> logits;
  ``ctx.device``, ``ctx.seed``, ``ctx.batch_size`` (the corrector's chunk size).
- ``ctx.extras["generator"]``: an invertible flow, any object with
  ``encode(x) -> z`` and ``decode(z) -> x``. ``x`` is float [N,C,H,W] in [0,1]
  on ``ctx.device``; ``z`` is a tensor with batch dimension first, or a
  list/tuple of such tensors (multiscale flows); ``decode(encode(x)) == x`` up
  to float error; both differentiable, per-sample (eval mode). Correctors
  clamp decoded pixels to [0,1] and treat a non-finite decode as divergence.
  The stage sets this key per run from ``ctx.extras["generators"]`` (a dict
  label -> flow, as the generator stage stores them) or passes
  ``ctx.extras["generator"]`` through when only that is given.
- ``ctx.extras["prober"]``: a callable mapping images [N,C,H,W] in [0,1] on
  ``ctx.device`` to P(hit) float [N] in [0,1], differentiable with respect to
  the images (classifier features at the prober's layer -> prober MLP), using
  no label and no other sample of the batch. ``LayerProber(classifier, layer,
  head)`` below builds one from a head mapping features [N,D] -> P(hit) [N].
- ``ctx.extras["probers"]``: label -> such a callable, one per prober scorer
  of the suite (the first is the default); a corrector spec's ``prober``
  option names the one that guides it and flags images for its loop. The
  stage hands the chosen one to the corrector as ``ctx.extras["prober"]``.
- ``ctx.extras["prober_hit_level"]``: float, the median P(hit) the prober gives
  the validation split's hits. The default stop level of the prober stop rule
  (see probebench/plugins/correctors/counterfactual.py): relative to real hits, so it
  fires although label smoothing 0.2 caps the prober near 0.9.
- ``ctx.extras["prober_threshold"]``: float, the label-free loop flags an
  image as a likely miss when P(hit) < this. Chosen on validation data, never
  on test (``flag_threshold`` below: Youden's J for detecting misses).

When ``prober_hit_level`` or ``prober_threshold`` is absent, the stage derives
it (``calibrate``) from the suite's validation split (``validation = N`` in
the suite: training images nothing trains on), or, without one, from the
classifier's training split, and says so: optimistic, since the classifier
fits its training images. ``run.json`` records both numbers per seed under
``correction`` with where they came from.

What the stage measures
-----------------------
Every corrector edits every image of the test cell once. Because an edit
depends only on its own image, the three views come from that one pass:
(a) the true misses, (b) the hits, and (c) the label-free loop "flag with the
prober, edit the flagged images, re-classify". Labels only judge:

- ``correction-rate``: true misses whose edit the classifier gets right / true
  misses (all of them are handed to the corrector; one its stop rule leaves
  alone counts as not corrected);
- ``break-rate``: hits whose edit the classifier gets wrong / hits;
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
stop level, and ``details.*`` (a path only for changed samples, float16); per
method one PNG grid of original / edited / delta for corrected misses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probebench.cache import hash_key
from probebench.console import console, task
from probebench.errors import UserError
from probebench.evaluate import bootstrap_indices, estimate
from probebench.pipeline.features import resolve_layer

# metric name -> higher is better
CORRECTION_METRICS = {
    "correction-rate": True,
    "break-rate": False,
    "net-accuracy-gain": True,
    "tuned-net-accuracy-gain": True,
    "edit-size": False,
    "median-steps": False,
    "p90-steps": False,
    "images-per-second": True,
}
PIN_KEY = "generator"  # a corrector spec's option naming the one generator it runs with
GUIDE_KEY = "prober"  # ... and the prober (a scorer label) that guides it and flags images for the loop


# -- building a prober callable -----------------------------------------------
class _Captured(Exception):
    """Raised by the hook to skip the layers after the probed one."""


class LayerProber(torch.nn.Module):
    """P(hit) of images = ``head(features of classifier at layer)``, differentiable.

    ``head`` maps flattened features [N, D] to P(hit) [N] (e.g. a prober's
    ``predict`` when it keeps the autograd graph). The classifier's forward
    pass stops at ``layer``.
    """

    def __init__(self, classifier: torch.nn.Module, layer: str, head):
        super().__init__()
        self.classifier = classifier
        self.module = resolve_layer(classifier, layer)
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        captured = []

        def hook(_module, _inputs, output):
            captured.append(output)
            raise _Captured

        handle = self.module.register_forward_hook(hook)
        try:
            self.classifier(images)
        except _Captured:
            pass
        finally:
            handle.remove()
        return self.head(captured[0].flatten(1))


# -- thresholds from labelled held-out data ------------------------------------
def flag_threshold(p_hit, hit) -> float:
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


def gain_threshold(p_hit, gain) -> float:
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


def hit_level(p_hit, hit) -> float:
    """The median P(hit) of the hits: the default stop level."""
    p = np.asarray(p_hit, dtype=float)[np.asarray(hit, dtype=bool)]
    return float(np.median(p)) if len(p) else float("nan")


@torch.no_grad()
def prober_outputs(ctx, prober, images: torch.Tensor) -> torch.Tensor:
    """P(hit) [N] on the CPU, batched."""
    parts = [
        prober(images[s : s + ctx.batch_size].to(ctx.device)).detach().cpu()
        for s in range(0, len(images), ctx.batch_size)
    ]
    return torch.cat(parts) if parts else torch.empty(0)


def calibrate(ctx, prober, images: torch.Tensor, labels: torch.Tensor, limit: int = 5000) -> tuple[float, float]:
    """(prober_threshold, prober_hit_level) from labelled images (the first ``limit``)."""
    images, labels = images[:limit], labels[:limit]
    hit = (ctx.forward(images)[0].argmax(dim=1) == labels).numpy()
    p = prober_outputs(ctx, prober, images).numpy()
    return flag_threshold(p, hit), hit_level(p, hit)


# -- metrics of one corrector on one cell ----------------------------------------
@dataclass
class Outcome:
    """Per-sample facts of one corrector on one cell (all arrays of length N)."""

    hit: np.ndarray  # the classifier was right on the original image
    hit_after: np.ndarray  # ... and on the edited image
    flagged: np.ndarray  # the prober flagged the original (P(hit) < threshold)
    edit_size: np.ndarray  # ||x' - x||_2
    steps: np.ndarray
    seconds: float
    tuned_flagged: np.ndarray | None = None  # flagged with the corrector's validation-tuned threshold


def _mean(values, _unused=None):
    return np.mean(values, axis=-1)


def correction_rate(hit, hit_after) -> float:
    miss = ~np.asarray(hit, dtype=bool)
    return float(np.mean(np.asarray(hit_after, dtype=bool)[miss])) if miss.any() else float("nan")


def break_rate(hit, hit_after) -> float:
    hit = np.asarray(hit, dtype=bool)
    return float(np.mean(~np.asarray(hit_after, dtype=bool)[hit])) if hit.any() else float("nan")


def loop_gain_per_sample(hit, hit_after, flagged) -> np.ndarray:
    """+1 where the loop turns a miss into a hit, -1 where it breaks a hit, else 0."""
    hit = np.asarray(hit, dtype=bool)
    after = np.where(np.asarray(flagged, dtype=bool), np.asarray(hit_after, dtype=bool), hit)
    return after.astype(float) - hit.astype(float)


def net_accuracy_gain(hit, hit_after, flagged) -> float:
    gain = loop_gain_per_sample(hit, hit_after, flagged)
    return float(gain.mean()) if len(gain) else float("nan")


def _row(metric: str, values: np.ndarray, bootstrap, with_interval: bool = True, value=None) -> dict:
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return {"metric": metric, "value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    if value is not None or not with_interval:
        v = float(value if value is not None else np.mean(values))
        return {"metric": metric, "value": v, "ci_low": float("nan"), "ci_high": float("nan"), "n": len(values)}
    indices = bootstrap_indices(len(values), bootstrap.resamples, bootstrap.seed)
    est = estimate(_mean, values, values, indices, bootstrap.confidence)
    return {"metric": metric, **est.__dict__}


def outcome_rows(outcome: Outcome, bootstrap) -> list[dict]:
    """Rows ``{metric, value, ci_low, ci_high, n}`` of the correction metrics."""
    hit = np.asarray(outcome.hit, dtype=bool)
    after = np.asarray(outcome.hit_after, dtype=bool)
    miss = ~hit
    steps = np.asarray(outcome.steps, dtype=float)[miss]
    n = len(hit)
    speed = n / outcome.seconds if outcome.seconds > 0 else float("nan")
    return [
        _row("correction-rate", after[miss], bootstrap),
        _row("break-rate", ~after[hit], bootstrap),
        _row("net-accuracy-gain", loop_gain_per_sample(hit, after, outcome.flagged), bootstrap),
        *(
            [_row("tuned-net-accuracy-gain", loop_gain_per_sample(hit, after, outcome.tuned_flagged), bootstrap)]
            if outcome.tuned_flagged is not None
            else []
        ),
        _row("edit-size", np.asarray(outcome.edit_size, dtype=float)[miss], bootstrap),
        _row("median-steps", steps, bootstrap, value=np.median(steps) if len(steps) else None),
        _row("p90-steps", steps, bootstrap, value=np.percentile(steps, 90) if len(steps) else None),
        _row("images-per-second", np.ones(n), bootstrap, value=speed),
    ]


# -- the stage ------------------------------------------------------------------
@dataclass
class Guide:
    """A prober with the flag threshold and stop level chosen for it."""

    prober: Any
    threshold: float
    level: float
    calibrated_on: str
    key: str = ""  # the prober's cache key, threshold, level and seed; empty: not cacheable

    def calibration(self) -> dict:
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


@dataclass
class Setup:
    """What one seed's correction runs share."""

    bound: list[Bound]
    generators: dict[str, Any]
    guides: dict[str, Guide]
    grids: set[str] = field(default_factory=set)

    def guide_label(self, bound: Bound) -> str:
        return bound.guide or next(iter(self.guides))  # unnamed: the first prober

    def calibration(self) -> dict:
        """What run.json records of how the loop was set up, per guiding prober
        (and the tuned threshold per corrector, once ``tune`` has run)."""
        out = {label: guide.calibration() for label, guide in self.guides.items()}
        tuned = {b.method: b.tuned for b in self.bound if b.tuned is not None}
        return {**out, "tuned_thresholds": tuned} if tuned else out


def generators_of(extras: dict) -> dict[str, Any]:
    generators = extras.get("generators")
    if generators:
        return dict(generators)
    return {"generator": extras["generator"]} if extras.get("generator") is not None else {}


def probers_of(extras: dict) -> dict[str, Any]:
    """label -> prober callable: ``extras["probers"]``, else ``{"prober": extras["prober"]}``;
    the first is the default guide."""
    probers = dict(extras.get("probers") or {})
    if not probers and extras.get("prober") is not None:
        probers["prober"] = extras["prober"]
    return probers


def _guide(ctx, label: str, prober) -> Guide:
    threshold, level = ctx.extras.get("prober_threshold"), ctx.extras.get("prober_hit_level")
    source = "ctx.extras"
    if threshold is None or level is None:
        if ctx.val_labels is not None:
            images, labels, source = ctx.val_images, ctx.val_labels, f"validation split ({len(ctx.val_labels)} images)"
        else:
            images, labels, source = ctx.train_images, ctx.train_labels, "training split"
        fit_threshold, fit_level = calibrate(ctx, prober, images, labels)
        threshold = fit_threshold if threshold is None else threshold
        level = fit_level if level is None else level
        if ctx.val_labels is None:
            console.print(
                f"[yellow]correction: the suite has no validation split (add validation = N); chose "
                f"{label}'s flag threshold ({threshold:.3f}) and stop level ({level:.3f}) on the training "
                f"split, where the classifier is optimistic[/]"
            )
    prober_key = ctx.extras.get("prober_keys", {}).get(label)
    key = hash_key("correction-guide", prober_key, float(threshold), float(level), ctx.seed) if prober_key else ""
    return Guide(prober, float(threshold), float(level), source, key)


def setup(correctors, registry, ctx) -> Setup:
    """Create the suite's correctors for ``ctx`` (one per generator unless
    pinned with a ``generator`` option; guided by the first prober unless a
    ``prober`` option names another) and fix each guide's threshold and stop level."""
    generators, probers = generators_of(ctx.extras), probers_of(ctx.extras)
    if not generators or not probers:
        raise UserError(
            "correctors need a generator and a prober: ctx.extras holds "
            f"{sorted(ctx.extras) or 'nothing'}; add a generator and a prober to the suite"
        )
    generator_keys = ctx.extras.get("generator_keys", {})
    guides: dict[str, Guide] = {}
    bound = []
    for spec in correctors:
        options = dict(spec.options)
        pinned = options.pop(PIN_KEY, None)
        guide = options.pop(GUIDE_KEY, None) or next(iter(probers))
        if guide not in probers:
            raise UserError(
                f"corrector {spec.label!r} names prober {guide!r}; the suite's probers: {', '.join(probers)}"
            )
        if guide not in guides:
            guides[guide] = _guide(ctx, guide, probers[guide])
        corrector = registry.create("corrector", spec.name, options)
        if not getattr(corrector, "uses_generator", True):
            labels = [(spec.label, None)]
        elif pinned is not None:
            if pinned not in generators:
                raise UserError(
                    f"corrector {spec.label!r} names generator {pinned!r}; the suite's generators: "
                    f"{', '.join(generators)}"
                )
            labels = [(spec.label, pinned)]
        else:
            labels = [(spec.label if len(generators) == 1 else f"{spec.label}@{g}", g) for g in generators]
        versions = (getattr(type(corrector), "version", "1"), registry.entry("corrector", spec.name).plugin.version)
        for method, generator in labels:
            keyed = guides[guide].key and (generator is None or generator in generator_keys)
            key = (
                hash_key(
                    spec.name, options, *versions, generator, generator_keys.get(generator), guide, guides[guide].key
                )
                if keyed
                else ""
            )
            bound.append(Bound(method, corrector, generator, key, guide))
    return Setup(bound, generators, guides)


def check_correction(correction, images: torch.Tensor):
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


def correct_images(
    ctx,
    state: Setup,
    images: torch.Tensor,
    labels: torch.Tensor,
    bootstrap,
    *,
    out: Path | None = None,
    tag: str = "cell",
    on_failure=None,
    cache=None,
) -> list[dict]:
    """Run every bound corrector on ``images`` and return the metric rows
    (``method`` filled in). Writes artifacts under ``out/corrections`` when given.

    ``cache(bound, build)``, when given, returns the stored record of ``bound``
    on these images or builds and stores it: a resumed run edits nothing twice."""
    predictions = ctx.forward(images)[0].argmax(dim=1)
    hit = (predictions == labels).numpy()
    p_hits = {
        label: prober_outputs(ctx, state.guides[label].prober, images)
        for label in dict.fromkeys(state.guide_label(b) for b in state.bound)
    }
    rows = []
    with task(f"correct {tag}", len(state.bound)) as advance:
        for bound in state.bound:
            guide, p_hit = state.guides[state.guide_label(bound)], p_hits[state.guide_label(bound)]
            flagged = p_hit < guide.threshold

            def build(bound=bound, guide=guide, p_hit=p_hit, flagged=flagged) -> dict:
                return edit(ctx, state, bound, guide, images, labels, predictions, p_hit, flagged)

            record = _attempt(lambda: build() if cache is None else cache(bound, build), bound.method, on_failure)
            if record is None:
                advance()
                continue
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
            rows += [{"method": bound.method, **row} for row in outcome_rows(outcome, bootstrap)]
            if out is not None:
                _save(out, bound.method, tag, state, images, record)
            advance()
    return rows


def _attempt(build, method: str, on_failure):
    """``build()``; or None once a corrector's exception went to ``on_failure``
    (without one it propagates, as a UserError always does)."""
    try:
        return build()
    except UserError:
        raise
    except Exception as exc:
        if on_failure is None:
            raise
        on_failure(method, exc)
        return None


def edit(ctx, state: Setup, bound: Bound, guide: Guide, images, labels, predictions, p_hit, flagged) -> dict:
    """Run one bound corrector on ``images`` and return its record (see ``_record``)."""
    extras = {
        **ctx.extras,
        "prober": guide.prober,
        "prober_threshold": guide.threshold,
        "prober_hit_level": guide.level,
    }
    if bound.generator is not None:
        extras["generator"] = state.generators[bound.generator]
    torch.manual_seed(ctx.seed)
    started = time.perf_counter()
    correction = bound.corrector.correct(replace(ctx, extras=extras), images)
    seconds = time.perf_counter() - started
    edited, steps = check_correction(correction, images)
    after = ctx.forward(edited)[0].argmax(dim=1)
    return _record(
        guide,
        images,
        labels,
        edited,
        steps,
        predictions,
        after,
        p_hit,
        flagged,
        seconds,
        getattr(correction, "details", {}) or {},
    )


def tune(ctx, state: Setup, store=None, on_failure=None) -> None:
    """Set each bound corrector's ``tuned`` loop threshold: the one that
    maximises its net gain on the validation split (edited once, cached in
    ``store``). Without a validation split nothing is tuned."""
    if ctx.val_labels is None or not len(ctx.val_labels):
        return
    images, labels = ctx.val_images, ctx.val_labels
    predictions = ctx.forward(images)[0].argmax(dim=1)
    p_hits = {}
    with task("tune the loop on validation", len(state.bound)) as advance:
        for bound in state.bound:
            label = state.guide_label(bound)
            guide = state.guides[label]
            if label not in p_hits:
                p_hits[label] = prober_outputs(ctx, guide.prober, images)
            p_hit = p_hits[label]

            def build(bound=bound, guide=guide, p_hit=p_hit) -> dict:
                return edit(ctx, state, bound, guide, images, labels, predictions, p_hit, p_hit < guide.threshold)

            key = hash_key("correction-validation", bound.key)
            record = _attempt(
                lambda: build() if store is None or not bound.key else store.get_or_build("correction", key, build),
                bound.method,
                on_failure,
            )
            if record is None:
                advance()
                continue
            gain = (record["prediction_after"] == labels).long() - (predictions == labels).long()
            bound.tuned = gain_threshold(p_hit.numpy(), gain.numpy())
            advance()


def correct_cell(
    suite, registry, store, ctx, state: Setup, splits, corruption, severity: int, out: Path, failures: list
) -> list[dict]:
    """The tidy rows of every corrector on one test cell (called by ``run_suite``);
    each (corrector, cell) record is cached in ``store``."""
    from probebench.pipeline.run import _cell_key, _failure, cell_data, cell_name

    name = cell_name(corruption)
    images, labels = cell_data(registry, splits, corruption, severity, ctx.seed, suite.data_root)
    cell = f"seed={ctx.seed} corruption={name} severity={severity}"
    keys = {
        "suite": suite.name,
        "dataset": suite.dataset.label,
        "corruption": name,
        "severity": severity,
        "classifier": suite.classifier.label,
        "seed": ctx.seed,
    }
    cell_key = _cell_key(registry, ctx, corruption, severity)

    def cache(bound: Bound, build):
        if not bound.key:
            return build()
        return store.get_or_build("correction", hash_key("correction", cell_key, bound.key), build)

    rows = correct_images(
        ctx,
        state,
        images,
        labels,
        suite.bootstrap,
        out=out,
        tag=f"seed{ctx.seed}_{name}-{severity}",
        cache=cache,
        on_failure=lambda label, exc: _failure(failures, "corrector", label, "correct", cell, exc),
    )
    return [{**keys, **row} for row in rows]


# -- artifacts --------------------------------------------------------------------
def _filename(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in text)


def _record(guide: Guide, images, labels, edited, steps, before, after, p_hit, flagged, seconds, details) -> dict:
    """Everything one corrector produced on one cell: what ``corrections/*.pt``
    holds, plus the edit sizes and the wall seconds (cached per cell)."""
    changed = (steps > 0).nonzero().squeeze(1)  # the others are their original test image, bit for bit
    record = {
        "index": changed,
        "edited": edited[changed],
        "steps": steps,
        "labels": labels,
        "prediction_before": before,
        "prediction_after": after,
        "p_hit": p_hit,
        "flagged": torch.as_tensor(flagged),
        "threshold": guide.threshold,
        "stop_level": guide.level,
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


def _save(out: Path, method: str, tag: str, state: Setup, images: torch.Tensor, record: dict) -> None:
    from probebench.cache import atomic_write

    folder = Path(out) / "corrections"
    payload = {k: v for k, v in record.items() if k not in ("edit_size", "seconds")}
    atomic_write(folder / f"{_filename(method)}_{_filename(tag)}.pt", lambda tmp: torch.save(payload, tmp))
    if method not in state.grids:
        state.grids.add(method)
        before, after, labels = record["prediction_before"], record["prediction_after"], record["labels"]
        corrected = ((before != labels) & (after == labels)).nonzero().squeeze(1)
        if len(corrected):
            edited = images.clone()
            edited[record["index"]] = record["edited"]
            atomic_write(
                folder / f"{_filename(method)}_grid.png",
                lambda tmp: save_grid(
                    tmp, images, edited, corrected[:8], before, after, labels, f"{method}: corrected misses ({tag})"
                ),
            )


def save_grid(path, images, edited, indices, before, after, labels, title: str) -> None:
    """A PNG: one column per sample, rows original / edited / delta (x' - x,
    red where the edit added intensity, blue where it removed it, scaled per
    column to its largest |delta|). Drawn as one mosaic on one axes (fast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps

    _channels, height, width = images.shape[1:]
    pad, cols = 2, max(1, len(indices))
    canvas = np.ones((3 * (height + pad) + pad, cols * (width + pad) + pad, 3))
    bounds = []
    for col, i in enumerate(indices.tolist()):
        delta = (edited[i] - images[i]).mean(dim=0).numpy()
        bound = float(np.abs(delta).max()) or 1.0
        bounds.append(bound)
        tiles = [_rgb(images[i]), _rgb(edited[i]), colormaps["seismic"](0.5 + 0.5 * delta / bound)[..., :3]]
        left = pad + col * (width + pad)
        for row, tile in enumerate(tiles):
            top = pad + row * (height + pad)
            canvas[top : top + height, left : left + width] = tile
    fig, ax = plt.subplots(figsize=(1.1 * cols + 1.2, 4.4))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([pad + col * (width + pad) + width / 2 for col in range(len(bounds))])
    ax.set_xticklabels([f"|δ|≤{b:.2f}" for b in bounds], fontsize=7)
    ax.set_yticks([pad + row * (height + pad) + height / 2 for row in range(3)])
    ax.set_yticklabels(["original", "edited", "x'-x\nred +, blue -"], fontsize=8)
    ax.tick_params(length=0)
    for col, i in enumerate(indices.tolist()):
        ax.text(
            pad + col * (width + pad) + width / 2,
            -1,
            f"label {int(labels[i])}\n{int(before[i])} → {int(after[i])}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_title(title, fontsize=9, pad=24)
    fig.tight_layout()
    with open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def _rgb(image: torch.Tensor) -> np.ndarray:
    picture = image.clamp(0, 1).permute(1, 2, 0).numpy()
    return np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else picture[..., :3]
