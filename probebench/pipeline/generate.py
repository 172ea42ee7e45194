"""Generator stage: train the suite's flow generators on the training images
(cached), measure their quality on the test images, and hand them to later
stages.

A generator component's ``build(shape)`` returns a flow (an nn.Module) with
``encode(x) -> z``, ``decode(z) -> x``, ``log_prob(x)`` and
``bits_per_dim(x, generator)`` (per sample, of the dequantised 8-bit image).
Training maximises the likelihood: Adam on the mean bits/dim, linear warm-up
then cosine decay, with the hyper-parameters the component sets as attributes
(``DEFAULTS`` otherwise). The checkpoint is the state dict plus the training
time; it is cached under a key of the dataset, the generator, their options
and versions, and the seed.

``generator_stage`` returns each seed's trained flows by suite label, with
their cache keys, for the correction stage.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from probebench.cache import ArtifactStore, content_digest, hash_key, load_module_state
from probebench.console import console
from probebench.figures import cached_figures, figure_key
from probebench.paths import safe_part
from probebench.pipeline.allocation import building
from probebench.pipeline.cells import Cell
from probebench.pipeline.stage import Run
from probebench.pipeline.train import Recipe, dataset_parts, fit_module, held_out, spec_parts
from probebench.suite import ComponentSpec

if TYPE_CHECKING:
    from probebench.pipeline.context import Context
    from probebench.pipeline.data import Splits
    from probebench.registry import Registry

# Training hyper-parameters a generator component may set as attributes.
DEFAULTS = {"epochs": 20, "lr": 1e-3, "batch_size": 64, "warmup": 200, "grad_clip": 100.0}

# The quality rows a generator gets (plain numbers, no interval), lower is better for all.
METRICS = {
    "bits-per-dim": {"higher_is_better": False},
    "reconstruction-error": {"higher_is_better": False},
    "train-seconds": {"higher_is_better": False},
}
CLASSIFIER = "-"  # generator rows describe no classifier


def generator_key(
    registry: Registry,
    dataset_spec: ComponentSpec,
    generator_spec: ComponentSpec,
    seed: int,
    validation: int = 0,
    *,
    data: str,
    pool: int = 0,
) -> str:
    return hash_key(
        "generator",
        *dataset_parts(registry, dataset_spec, data),
        *spec_parts(registry, "generator", generator_spec),
        seed,
        *held_out(validation, pool),
    )


def _schedule(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0."""
    ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return ramp * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def fit(component: Any, flow: Any, images: torch.Tensor, seed: int, device: torch.device | str, label: str) -> None:
    """Maximum likelihood on ``images``; deterministic given ``seed`` (which
    also seeds the dequantisation noise)."""
    hp: dict[str, Any] = {k: getattr(component, k, v) for k, v in DEFAULTS.items()}

    def warmup_cosine(optimiser: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: _schedule(s, hp["warmup"], total))

    def batch_loss(idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return flow.bits_per_dim(images[idx].to(device), generator).mean()

    recipe = Recipe(hp, warmup_cosine, "generator", "bits/dim")
    fit_module(flow, len(images), batch_loss, recipe, seed, device, label)


def trained_generator(
    registry: Registry,
    store: ArtifactStore,
    dataset_spec: ComponentSpec,
    generator_spec: ComponentSpec,
    splits: Splits,
    seed: int,
    device: torch.device | str,
) -> tuple[Any, float, bool]:
    """(flow, training seconds, whether it came from the cache): trained with
    ``seed`` on the training split, or loaded from the cache (the seconds are
    those of the run that trained it)."""
    key = generator_key(
        registry, dataset_spec, generator_spec, seed, splits.validation, data=splits.fingerprint, pool=splits.pool
    )
    component = registry.create("generator", generator_spec.name, generator_spec.options)
    torch.manual_seed(seed)
    with building("generator", generator_spec):
        flow = component.build(tuple(splits.dataset.shape))

    trained = []

    def build() -> dict:
        trained.append(True)
        started = time.perf_counter()
        fit(component, flow, splits.train_images, seed, device, f"{generator_spec.label} seed {seed}")
        seconds = time.perf_counter() - started
        return {"state_dict": {k: v.cpu() for k, v in flow.state_dict().items()}, "train_seconds": seconds}

    payload = store.get_or_build("generator", key, build)
    load_module_state(store, "generator", key, payload, flow, generator_spec.name)
    flow.to(device).eval().requires_grad_(False)
    # from the cache: not trained here, nor by this run's fit task (pipeline/fit.py) before it
    return flow, float(payload["train_seconds"]), not trained and not store.stored_since_opened("generator", key)


@torch.no_grad()
def quality(
    flow: Any, images: torch.Tensor, seed: int, batch_size: int, device: torch.device | str
) -> dict[str, float]:
    """Mean bits/dim of the dequantised ``images`` (noise seeded by ``seed``) and the
    largest |decode(encode(x)) - x| (infinite when a decode is not finite)."""
    generator = torch.Generator().manual_seed(seed)
    bits, worst = [], 0.0
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        bits.append(flow.bits_per_dim(x, generator).cpu())
        back = flow.decode(flow.encode(x))
        error = (back - x).abs().max().item() if torch.isfinite(back).all() else math.inf
        worst = max(worst, error)
    return {"bits-per-dim": torch.cat(bits).mean().item(), "reconstruction-error": worst}


def save_grids(
    flow: Any,
    images: torch.Tensor,
    out: Path,
    stem: str,
    seed: int,
    device: torch.device | str,
    store: ArtifactStore | None = None,
    key: str = "",
) -> None:
    """``<stem>-samples.png`` (8x8 samples at temperatures 1.0 (top half) and 0.7)
    and ``<stem>-reconstructions.png`` (rows of test images, each followed by
    its decode(encode(x))). With the flow's cache ``key`` the pictures are
    drawn once and copied from ``store`` afterwards (``probebench.figures``)."""
    originals = images[:32]
    paths = [out / f"{stem}-samples.png", out / f"{stem}-reconstructions.png"]
    figure = figure_key("flow-grids", key, seed, str(device), content_digest(originals)) if key else ""
    cached_figures(store, figure, paths, partial(_draw_grids, flow, originals, seed, device))


def _draw_grids(flow: Any, originals: torch.Tensor, seed: int, device: torch.device | str, paths: list[Path]) -> None:
    from probebench.report.grids import image_grid

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        samples = torch.cat([flow.sample(32, 1.0, generator), flow.sample(32, 0.7, generator)]).cpu()
        back = flow.decode(flow.encode(originals.to(device))).cpu()
    pairs = torch.stack([originals.view(4, 8, *originals.shape[1:]), back.view(4, 8, *back.shape[1:])], dim=1)
    image_grid(samples, 8, paths[0])
    image_grid(pairs.flatten(0, 2), 8, paths[1])


@dataclass(frozen=True)
class TrainedFlow:
    """A trained flow (eval mode, on the run's device, parameters frozen) and
    its cache key ("": not cached, so nothing made with it is cached either)."""

    flow: Any
    key: str = ""


def generator_stage(run: Run, ctx: Context) -> tuple[list[dict[str, Any]], dict[str, TrainedFlow]]:
    """Train or load every generator of the suite for ``ctx.seed``, save their
    grids, and return their quality rows and the flows by suite label (a
    generator that fails is recorded and left out)."""
    rows, flows = [], {}
    columns = Cell().columns(run.suite, ctx.seed, classifier=CLASSIFIER)
    for spec in run.suite.generators:
        info = run.failures.call(
            partial(_trained, run, ctx, spec), "generator", spec.label, "train", f"seed={ctx.seed}"
        )
        if info.error is not None:
            continue
        flows[spec.label], values = info.result
        for metric, value in values.items():
            n = len(run.splits.test_images) if metric != "train-seconds" else len(run.splits.train_images)
            rows.append(
                {
                    **columns,
                    "method": spec.label,
                    "metric": metric,
                    "value": value,
                    "ci_low": math.nan,
                    "ci_high": math.nan,
                    "n": n,
                }
            )
    return rows, flows


def _trained(run: Run, ctx: Context, spec: ComponentSpec) -> tuple[TrainedFlow, dict[str, float]]:
    """One generator trained (or loaded), its quality measured (cached) and its grids saved."""
    flow, seconds, cached = trained_generator(
        run.registry, run.store, run.suite.dataset, spec, run.splits, ctx.seed, ctx.device
    )
    key, values = judged(run, spec, ctx.seed, flow, ctx.device)
    values["train-seconds"] = seconds
    origin = "from the cache, trained" if cached else "trained"
    console.print(
        f"generator {spec.label} seed {ctx.seed}: {values['bits-per-dim']:.3f} bits/dim, "
        f"reconstruction error {values['reconstruction-error']:.2g} ({origin} in {seconds:.0f} s)"
    )
    return TrainedFlow(flow, key), values


def judged(run: Run, spec: ComponentSpec, seed: int, flow: Any, device: torch.device | str) -> tuple[str, dict]:
    """The flow's cache key and its quality on the test split (cached), with
    its grids saved to the run folder (drawn once, then copied from the
    cache). The flow's fit task calls it too, right after training, so that
    on a worker it overlaps the other models' training."""
    splits = run.splits
    key = generator_key(
        run.registry, run.suite.dataset, spec, seed, splits.validation, data=splits.fingerprint, pool=splits.pool
    )
    # the test split is fixed by the dataset spec, which the generator key holds
    values = dict(
        run.store.get_or_build(
            "generator-quality",
            hash_key("quality", key),
            lambda: quality(flow, splits.test_images, seed, run.suite.batch_size, device),
        )
    )
    save_grids(flow, splits.test_images, run.out, safe_part(f"{spec.label}-seed{seed}"), seed, device, run.store, key)
    return key, values
