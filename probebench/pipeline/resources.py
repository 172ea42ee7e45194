"""What each stage task asks of a Ray worker (``num_cpus``, ``num_gpus``).

Three sources, later ones winning field by field: the default (a CPU per
task; on a GPU run a whole GPU for training, a quarter of one for the rest),
the components a task runs (a class attribute ``resources = {"num_gpus": 1}``
on a classifier, generator, scorer or corrector: the task asks the largest
of its components), and the suite's ``resources`` table
(``resources = { train = { num_gpus = 1 } }``). The local executor ignores
them; they change where a task runs, never a number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from probebench.errors import UserError
from probebench.pipeline.graph import Resources

if TYPE_CHECKING:
    import torch

    from probebench.pipeline.stage import Run

KEYS = ("num_cpus", "num_gpus")
STAGES = ("train", "generators", "prepare", "score", "correct", "active")
KINDS = {  # the components a stage's tasks run: (kind, the suite's field)
    "train": (("classifier", "classifier"),),
    "generators": (("generator", "generators"),),
    "prepare": (("scorer", "scorers"),),
    "score": (("scorer", "scorers"),),
    "correct": (("corrector", "correctors"),),
    "active": (("classifier", "classifier"),),
}


def default(stage: str, device: torch.device) -> Resources:
    """One CPU; on a GPU run a whole GPU to train and a quarter of one for the
    rest, so a GPU node gets the training and CPU work spreads."""
    if device.type != "cuda":
        return Resources()
    return Resources(1.0, 1.0 if stage in ("train", "generators", "active") else 0.25)


def stage_resources(run: Run, stage: str, device: torch.device) -> Resources:
    """What a ``stage`` task of ``run`` asks: the default, raised to its components', then the suite's."""
    chosen = default(stage, device)
    for kind, field in KINDS.get(stage, ()):
        specs = getattr(run.suite, field)
        for spec in specs if isinstance(specs, tuple) else (specs,):
            cls = run.registry.get(kind, spec.name)
            asked = check(getattr(cls, "resources", None) or {}, f"{kind} {spec.name!r}: class attribute resources")
            chosen = Resources(max(chosen.cpus, asked.get("num_cpus", 0)), max(chosen.gpus, asked.get("num_gpus", 0)))
    suite = run.suite.resources.get(stage, {})
    return Resources(suite.get("num_cpus", chosen.cpus), suite.get("num_gpus", chosen.gpus))


def check(table: Any, where: str) -> dict[str, float]:
    """``table`` as ``{num_cpus, num_gpus}`` of non-negative numbers, else a one-line UserError."""
    if not isinstance(table, Mapping):
        raise UserError(f"{where} must be a table like {{ num_gpus = 1 }}, got {table!r}")
    for key, value in table.items():
        if key not in KEYS:
            raise UserError(f"{where}: unknown key {key!r}; use {' or '.join(KEYS)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise UserError(f"{where}: {key} must be a non-negative number, got {value!r}")
    return {key: float(value) for key, value in table.items()}


def suite_table(value: Any, where: str) -> dict[str, dict[str, float]]:
    """A suite's ``resources`` table, checked: stage -> {num_cpus, num_gpus}."""
    if not isinstance(value, Mapping):
        raise UserError(f"{where}: 'resources' must be a table like {{ train = {{ num_gpus = 1 }} }}")
    for stage in value:
        if stage not in STAGES:
            raise UserError(f"{where}: resources for unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return {stage: check(table, f"{where}: resources.{stage}") for stage, table in value.items()}
