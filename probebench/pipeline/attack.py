"""Attack stage: the images of an adversarial test cell, crafted by an attack
plugin against the run's own classifier at one severity (e.g. PGD at an L-inf
budget), cached under the cell's key (which names the classifier, the attack,
its options and version, and the severity).

Labels guide the attack only, as in every robustness benchmark; the cell is
then scored like any other: accuracy on the attacked images and whether each
scorer notices that an attacked prediction is wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from probebench.cache import hash_key
from probebench.pipeline.data import cell_data, check_images, corruption_generator
from probebench.suite import AttackSpec

if TYPE_CHECKING:
    from probebench.pipeline.cells import Cell
    from probebench.pipeline.context import Context
    from probebench.pipeline.stage import Run


def cell_images(run: Run, ctx: Context, cell: Cell) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of any test cell: an attack's (crafted, or from the
    cache), else the clean, corrupted or dataset-shipped images of ``cell_data``."""
    if not isinstance(cell.corruption, AttackSpec):
        return cell_data(run.registry, run.splits, cell, ctx.seed, run.suite.data_root)
    spec, labels = cell.corruption, run.splits.test_labels
    key = hash_key("attack", cell.key(run.registry, ctx.classifier_key))

    def build() -> dict[str, torch.Tensor]:
        return {"images": attack(run, ctx, spec, cell.severity)}

    return run.store.get_or_build("attack", key, build)["images"], labels


def attack(run: Run, ctx: Context, spec: AttackSpec, severity: int) -> torch.Tensor:
    """The test split attacked by ``spec`` at ``severity`` against ``ctx.classifier``,
    in batches of the suite's batch size, with a generator fixed by (seed, attack, severity)."""
    from probebench.console import task

    component = run.registry.create("attack", spec.name, spec.options)
    images, labels = run.splits.test_images, run.splits.test_labels
    generator = corruption_generator(ctx.seed, f"attack:{spec.name}", severity)
    model = ctx.classifier.eval()
    parts = []
    batch = ctx.batch_size
    with task(f"attack {spec.name} severity {severity}", len(images)) as advance:
        for start in range(0, len(images), batch):
            x, y = images[start : start + batch].to(ctx.device), labels[start : start + batch].to(ctx.device)
            parts.append(component(model, x, y, severity, generator).detach().cpu())
            advance(len(x))
    out = torch.cat(parts)
    check_images(out, f"attack {spec.name!r} severity {severity}", tuple(images.shape[1:]))
    if out.shape != images.shape:
        raise ValueError(f"attack {spec.name!r} returned {list(out.shape)} for {list(images.shape)} images")
    return out
