"""Train stage: fit a classifier on the training split, cached by everything
that determines the weights (dataset and options, classifier and options,
plugin versions, seed). ``fit_module`` is the training loop the generator
stage (generate.py) shares."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from probebench.cache import ArtifactStore, hash_key, load_module_state
from probebench.console import task
from probebench.errors import UserError
from probebench.kinds import trains_itself
from probebench.pipeline.allocation import building
from probebench.suite import ComponentSpec

if TYPE_CHECKING:
    from probebench.pipeline.data import Splits
    from probebench.pipeline.stage import Run
    from probebench.registry import Registry

# Training hyper-parameters a classifier component may set as attributes.
DEFAULTS = {"epochs": 5, "lr": 1e-3, "batch_size": 128, "weight_decay": 0.0}


def spec_parts(registry: Registry, kind: str, spec: ComponentSpec) -> list[Any]:
    """What names a configured component in a cache key: its name, options and class version."""
    return [spec.name, spec.options, getattr(registry.get(kind, spec.name), "version", "1")]


def dataset_parts(registry: Registry, spec: ComponentSpec, data: str) -> list[Any]:
    """What names the data in a cache key: the dataset component and the
    fingerprint of the data it actually read (``Splits.fingerprint``)."""
    return [*spec_parts(registry, "dataset", spec), {"data": data}]


def held_out(validation: int, pool: int = 0) -> list[dict[str, int]]:
    """The key part of a validation hold-out and an active-learning pool
    (none without them, so older keys stay as they were)."""
    return ([{"validation": validation}] if validation else []) + ([{"pool": pool}] if pool else [])


def classifier_key(
    registry: Registry,
    dataset_spec: ComponentSpec,
    classifier_spec: ComponentSpec,
    seed: int,
    subset: str | None = None,
    validation: int = 0,
    *,
    data: str,
    weights: list[str] | None = None,
    pool: int = 0,
) -> str:
    """The cache key of a trained classifier; ``subset`` is the digest of the
    training indices when the model saw only part of the training split,
    ``validation`` and ``pool`` the numbers of images held out of that split,
    ``data`` the fingerprint of the data read, ``weights`` the SHA-256 of the
    files the classifier loads weights from (``probebench.kinds.WeightsFiles``)."""
    parts = [
        "classifier",
        *dataset_parts(registry, dataset_spec, data),
        *spec_parts(registry, "classifier", classifier_spec),
        registry.entry("classifier", classifier_spec.name).plugin.version,
        seed,
    ]
    if subset is not None:  # keys of full-data models stay as they were
        parts.append({"subset": subset})
    if weights:  # likewise for classifiers that read no weights file
        parts.append({"weights": weights})
    return hash_key(*parts, *held_out(validation, pool))


def subset_digest(indices: torch.Tensor) -> str:
    """A short hash of the training indices a model is restricted to."""
    import hashlib

    return hashlib.sha256(indices.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()[:24]


def build_model(
    registry: Registry, spec: ComponentSpec, num_classes: int, shape: tuple[int, ...], component: Any = None
) -> tuple[Any, torch.nn.Module]:
    component = component or registry.create("classifier", spec.name, spec.options)
    with building("classifier", spec):
        return component, component.build(num_classes, tuple(shape))


def weights_digests(component: Any) -> list[str]:
    """SHA-256 of each file the classifier loads weights from, in its order (memoised by file version)."""
    from pathlib import Path

    from probebench.fingerprint import DigestMemo
    from probebench.kinds import weights_files

    memo = DigestMemo()
    digests = [memo.sha256(Path(path).resolve())[1] for path in weights_files(component)]
    memo.save()
    return digests


@dataclass(frozen=True)
class Recipe:
    """How ``fit_module`` trains a module: hyper-parameters ``hp`` (``epochs``,
    ``lr``, ``batch_size``, optional ``weight_decay`` and ``grad_clip``), the
    learning-rate ``schedule(optimiser, total_steps)``, and, for the message
    when training diverges, whose lr to lower (``kind``) and what the loss is."""

    hp: dict[str, Any]
    schedule: Callable[[torch.optim.Optimizer, int], Any]
    kind: str
    loss_name: str = "loss"


def fit_module(
    module: torch.nn.Module,
    n: int,
    batch_loss: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    recipe: Recipe,
    seed: int,
    device: torch.device | str,
    label: str,
) -> None:
    """The training loop classifiers and flows share: Adam with the recipe's
    schedule; each epoch visits the ``n`` training images in a fresh order
    drawn from a generator seeded by ``seed``, in batches whose loss is
    ``batch_loss(indices, generator)``; gradients clipped to ``grad_clip``
    when the recipe has one. Deterministic given ``seed``."""
    hp = recipe.hp
    generator = torch.Generator().manual_seed(seed)
    total = max(1, hp["epochs"] * math.ceil(n / hp["batch_size"]))
    optimiser = torch.optim.Adam(module.parameters(), lr=hp["lr"], weight_decay=hp.get("weight_decay", 0.0))
    schedule = recipe.schedule(optimiser, total)
    module.to(device).train()
    with task(f"train {label}", total) as advance:
        for _epoch in range(hp["epochs"]):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, hp["batch_size"]):
                loss = batch_loss(order[start : start + hp["batch_size"]], generator)
                if not torch.isfinite(loss):
                    raise UserError(
                        f"training {label} diverged ({recipe.loss_name} {loss.item()}); lower the {recipe.kind}'s lr"
                    )
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if hp.get("grad_clip") is not None:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), hp["grad_clip"])
                optimiser.step()
                schedule.step()
                advance()
    module.eval()


def fit(
    component: Any,
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int,
    device: torch.device | str,
    label: str,
) -> None:
    """Adam with a one-cycle learning-rate schedule on the cross-entropy; deterministic given ``seed``."""
    hp = {k: getattr(component, k, v) for k, v in DEFAULTS.items()}

    def one_cycle(optimiser: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.OneCycleLR:
        return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=hp["lr"], total_steps=total)

    def batch_loss(idx: torch.Tensor, _generator: torch.Generator) -> torch.Tensor:
        x, y = images[idx].to(device), labels[idx].to(device)
        return torch.nn.functional.cross_entropy(model(x), y)

    fit_module(model, len(images), batch_loss, Recipe(hp, one_cycle, "classifier"), seed, device, label)


def trained_classifier(
    registry: Registry,
    store: ArtifactStore,
    dataset_spec: ComponentSpec,
    classifier_spec: ComponentSpec,
    splits: Splits,
    seed: int,
    device: torch.device | str,
    subset: torch.Tensor | None = None,
    *,
    another: bool = False,
) -> tuple[torch.nn.Module, str]:
    """The classifier trained with ``seed`` (from the cache when it is there) and its key.

    With ``subset`` (indices into the training split) it is trained on those
    images only, cached under a key that includes their digest. ``another``
    says a scorer asks for one more model (an ensemble member, a fold model):
    a classifier that loads fixed weights cannot give one, a one-line error."""
    from probebench.kinds import trains

    component = registry.create("classifier", classifier_spec.name, classifier_spec.options)
    digest = None if subset is None else subset_digest(subset)
    key = classifier_key(
        registry,
        dataset_spec,
        classifier_spec,
        seed,
        digest,
        splits.validation,
        data=splits.fingerprint,
        weights=weights_digests(component),
        pool=splits.pool,
    )
    dataset = splits.dataset
    torch.manual_seed(seed)
    if not trains(component):
        if another or subset is not None:
            raise UserError(
                f"classifier {classifier_spec.label!r} loads fixed weights: it cannot train another model "
                "(ensemble members, cross-fitted fold models); use a prober with source = 'train'"
            )
        _, model = build_model(registry, classifier_spec, dataset.num_classes, dataset.shape, component)
        return model.to(device).eval(), key
    images, labels = splits.train_images, splits.train_labels
    label = f"{classifier_spec.label} seed {seed}"
    if subset is not None:
        images, labels = images[subset], labels[subset]
        label += f" on {len(subset)} of {len(splits.train_labels)} images"
    model = fitted(registry, store, classifier_spec, splits.dataset, images, labels, seed, device, key, label)
    return model, key


def fitted(
    registry: Registry,
    store: ArtifactStore,
    classifier_spec: ComponentSpec,
    dataset: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int,
    device: torch.device | str,
    key: str,
    label: str,
    init: dict[str, torch.Tensor] | None = None,
) -> torch.nn.Module:
    """The classifier of ``classifier_spec`` trained with ``seed`` on
    ``images``/``labels`` (starting from the weights ``init`` when given),
    cached under ``key``, which the caller makes of everything that determines
    the weights; in eval mode on ``device``."""
    torch.manual_seed(seed)
    component, model = build_model(registry, classifier_spec, dataset.num_classes, dataset.shape)
    if init is not None:
        model.load_state_dict(init)

    def build() -> dict:
        history = None
        if trains_itself(component):
            history = component.fit(model, images, labels, seed, device, label)
        else:
            fit(component, model, images, labels, seed, device, label)
        payload: dict[str, Any] = {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}
        if history is not None:  # payloads of other classifiers stay as they were
            payload["history"] = history
        return payload

    payload = store.get_or_build("classifier", key, build)
    load_module_state(store, "classifier", key, payload, model, classifier_spec.name)
    return model.to(device).eval()


def save_classifier_figures(run: Run, model: torch.nn.Module, key: str, seed: int) -> None:
    """Let a classifier that trains itself draw its figures (loss curves,
    counterfactuals, ...) into the run folder; nothing for the others."""
    spec = run.suite.classifier
    component = run.registry.create("classifier", spec.name, spec.options)
    if not trains_itself(component):
        return
    payload = run.store.load("classifier", key) or {}
    splits = run.splits
    stem = f"{spec.label}-seed{seed}"
    component.save_figures(model, payload.get("history", {}), splits.test_images, splits.test_labels, run.out, stem)
