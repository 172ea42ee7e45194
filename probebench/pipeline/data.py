"""Data stage: load a dataset's splits, check them, and corrupt test images.

Test cells come from two places: the suite's corruptions applied to the clean
test split (``corrupt``), and pre-corrupted test sets that a dataset ships
itself (CIFAR-10-C, CURE-TSR), which it lists with an optional
``cells(root)`` and serves with ``load_cell(corruption, severity, root)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from probebench.cache import hash_key
from probebench.errors import UserError
from probebench.fingerprint import data_record, recording
from probebench.pipeline.cells import Cell
from probebench.suite import ComponentSpec, CorruptionSpec

if TYPE_CHECKING:
    from probebench.registry import Registry


@dataclass
class Splits:
    dataset: Any  # the Dataset component (probebench.kinds.Dataset), with its optional cells/load_cell
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    cells: tuple[tuple[str, int], ...] = ()  # (corruption, severity) the dataset ships pre-corrupted
    # labelled images held out of the training split: nothing trains on them; the
    # correction stage chooses its flag threshold and stop level on them
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    # the active-learning pool (the suite's ``active.pool``): training images held out
    # unlabelled; only the active stage (probebench/pipeline/active.py) reads them
    pool_images: torch.Tensor | None = None
    pool_labels: torch.Tensor | None = None
    # the data actually read (files, embedded data, their hashes) and its
    # ``fingerprint``, which enters every cache key (``probebench/fingerprint.py``)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """The hash of the data read; part of every training key."""
        return str(self.data.get("fingerprint", ""))

    @property
    def validation(self) -> int:
        """How many training images were held out (0: none); part of every training key."""
        return 0 if self.val_labels is None else len(self.val_labels)

    @property
    def pool(self) -> int:
        """How many training images form the active-learning pool (0: none); part of every training key."""
        return 0 if self.pool_labels is None else len(self.pool_labels)


def check_images(images: torch.Tensor, where: str, shape: tuple[int, ...] | None = None) -> None:
    """Images must be float [N,C,H,W] in [0,1] (of ``shape`` when given) and finite."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise UserError(f"{where}: expected float images [N,C,H,W], got {got}")
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise UserError(f"{where}: expected images of shape [N,{','.join(map(str, shape))}], got {list(images.shape)}")
    if not torch.isfinite(images).all():
        raise UserError(f"{where}: images contain NaN or infinite values")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise UserError(
            f"{where}: pixel values must lie in [0,1], got [{images.min():.3g}, {images.max():.3g}]; divide by 255?"
        )


def check_labels(labels: Any, where: str) -> torch.Tensor:
    """Labels as int64: a float label must be a whole number (3.0, never 2.7,
    which ``.long()`` would silently truncate to 2)."""
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.is_complex():
        whole = torch.isfinite(labels) & (labels == labels.round())
        if not whole.all():
            bad = labels[~whole][0].item()
            raise UserError(
                f"{where}: labels must be whole class numbers, got {bad!r}; the dataset's labels are not classes"
            )
    elif labels.dtype == torch.bool:
        raise UserError(f"{where}: labels must be class numbers, got booleans")
    return labels.long()


def _checked(dataset: Any, images: torch.Tensor, labels: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    check_images(images, where, tuple(dataset.shape))
    if len(images) == 0:
        raise UserError(
            f"{where} is empty: nothing to train on or to test; check the data files and the 'limit' option"
        )
    labels = check_labels(labels, where)
    if labels.shape != (len(images),):
        raise UserError(f"{where}: {len(images)} images but labels of shape {list(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= dataset.num_classes):
        raise UserError(f"{where}: labels must lie in 0..{dataset.num_classes - 1}")
    return images.float().contiguous(), labels


def load_splits(
    registry: Registry, spec: ComponentSpec, data_root: str | None, validation: int = 0, pool: int = 0
) -> Splits:
    """Both splits, checked, and the list of the dataset's own corrupted cells:
    everything a run needs from disk is found (or its absence reported) here,
    before anything is trained. With ``validation`` > 0 that many training
    images (a fixed random draw, the same for every seed) become the
    validation split, with ``pool`` > 0 the next that many the unlabelled
    active-learning pool, and the training split is the rest."""
    dataset = registry.create("dataset", spec.name, spec.options)
    splits = {}
    with recording() as log:
        for split in ("train", "test"):
            images, labels = dataset.load(split, data_root)
            splits[split] = _checked(dataset, images, labels, f"dataset {spec.name!r} split {split!r}")
        cells: tuple[tuple[str, int], ...] = ()
        if hasattr(dataset, "cells"):
            cells = tuple((str(name), int(severity)) for name, severity in dataset.cells(data_root))
    data = data_record(log, (*splits["train"], *splits["test"]))
    classes = list(getattr(dataset, "classes", None) or [])
    if classes:  # class names, shown in reports and grids (not part of the fingerprint: they change no number)
        data["classes"] = [str(name) for name in classes]
    if not validation and not pool:
        return Splits(dataset, *splits["train"], *splits["test"], cells, data=data)
    images, labels = splits["train"]
    if validation + pool >= len(labels):
        held = f"validation = {validation} and active pool = {pool}" if pool else f"validation = {validation}"
        raise UserError(
            f"{held} but dataset {spec.name!r} has only {len(labels)} training images; "
            f"hold out fewer (the suite's 'validation' key and 'active.pool')"
        )
    # the validation draw does not depend on the pool, so adding a pool keeps the validation images
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(int(hash_key("validation")[:12], 16)))
    val = order[:validation].sort().values
    held_pool = order[validation : validation + pool].sort().values
    train = order[validation + pool :].sort().values
    out = Splits(dataset, images[train], labels[train], *splits["test"], cells, data=data)
    if validation:
        out.val_images, out.val_labels = images[val], labels[val]
    if pool:
        out.pool_images, out.pool_labels = images[held_pool], labels[held_pool]
    return out


def load_cell(
    splits: Splits, corruption: str, severity: int, data_root: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of a pre-corrupted test cell the dataset ships."""
    dataset = splits.dataset
    images, labels = dataset.load_cell(corruption, severity, data_root)
    return _checked(dataset, images, labels, f"dataset {dataset.name!r} cell {corruption!r} severity {severity}")


def corruption_generator(seed: int, name: str, severity: int) -> torch.Generator:
    """The torch.Generator a corruption gets: fixed by (run seed, corruption, severity)."""
    return torch.Generator().manual_seed(int(hash_key(seed, name, severity)[:12], 16))


def corrupt(registry: Registry, spec: CorruptionSpec, images: torch.Tensor, severity: int, seed: int) -> torch.Tensor:
    corruption = registry.create("corruption", spec.name, spec.options)
    out = corruption(images.clone(), severity, corruption_generator(seed, spec.name, severity))
    check_images(out, f"corruption {spec.name!r} severity {severity}", tuple(images.shape[1:]))
    return out


def cell_data(
    registry: Registry, splits: Splits, cell: Cell, seed: int, data_root: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of a test cell: the clean test split, the suite's
    corruption applied to it, or a cell the dataset ships."""
    if cell.corruption is None:
        return splits.test_images, splits.test_labels
    if isinstance(cell.corruption, str):
        return load_cell(splits, cell.corruption, cell.severity, data_root)
    return corrupt(registry, cell.corruption, splits.test_images, cell.severity, seed), splits.test_labels
