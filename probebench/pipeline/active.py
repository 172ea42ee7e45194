"""Active stage: an active-learning loop over the suite's ``active`` table.

``active.pool`` training images are held out of the classifier's training
split as an unlabelled pool (``load_splits``; the number enters every training
key, like ``validation``). Per seed, every strategy (an acquirer,
``probebench.kinds.Acquirer``) starts from the suite's classifier (round 0)
and, for ``rounds`` rounds, picks or makes ``budget`` images from what is left
of the pool; an oracle (``probebench.kinds.Oracle``) labels them and the
classifier is retrained on its training split plus everything acquired so far
(from scratch with the run's seed unless ``warm_start``), cached under a key
that includes the acquired images and their labels.

Who labels: a pool image is labelled by ``pool-label`` (its true label);
a generated image (``Acquisition.generated``) by each of the suite's
``active.oracle`` in turn, so a generating strategy runs once per oracle and
every row names its oracle. ``run.json`` -> ``active`` -> ``oracles`` records
each oracle's accuracy on the test split, per seed.

Rows (``active.csv``, the tidy columns of ``results.csv`` plus ``round``,
``labels``, ``strategy``, ``oracle``): per (strategy, oracle, round) the
suite's metrics for every scorer on the clean test split, as ``results.csv``
has them (``labels`` = labelled images the classifier was trained on); and
for each acquisition, in the round it was made:

- ``gain-over-random``: test accuracy minus ``random``'s at the same seed and
  round (equal label budget), with a paired bootstrap interval over test
  images (when the suite has a ``random`` strategy);
- ``acquired-miss-rate``: acquired images the classifier of that round gets
  wrong by the oracle's label (how well a strategy finds its misses);
- ``oracle-source-disagreement``: generated images whose oracle label differs
  from the label of the pool image they were made from (the identity
  question).

``active_scores.csv.gz`` holds the per-sample test predictions and confidences
behind every row; ``active/`` the acquired images and labels of every round
(``.pt``) and a PNG grid of each generating strategy's first acquisition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from probebench.cache import atomic_write, hash_key
from probebench.console import running, task
from probebench.evaluate import REPLICATES
from probebench.pipeline.cells import Cell
from probebench.pipeline.context import Context
from probebench.pipeline.evaluate import _row, detection_rows
from probebench.pipeline.score import Scorer, score_cell
from probebench.pipeline.stage import Run
from probebench.pipeline.train import fitted, spec_parts, subset_digest
from probebench.suite import POOL_ORACLE, ComponentSpec

if TYPE_CHECKING:
    import pandas as pd

    from probebench.pipeline.generate import TrainedFlow

COLUMNS = ["round", "labels", "strategy", "oracle"]  # added to results.csv's columns in active.csv
TABLE, SCORES, FOLDER = "active.csv", "active_scores.csv.gz", "active"
BASELINE = "random"
# metric -> higher is better (run.json ``metrics``)
METRICS = {"gain-over-random": True, "acquired-miss-rate": True, "oracle-source-disagreement": False}


@dataclass
class Trajectory:
    """One strategy labelled by one oracle, round after round."""

    spec: ComponentSpec
    acquirer: Any
    oracle: ComponentSpec
    remaining: torch.Tensor  # pool indices not acquired yet
    base_key: str  # the round-0 classifier's cache key (the suite's classifier)
    images: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)
    key: str = ""  # the current classifier's cache key

    @property
    def acquired(self) -> int:
        return sum(len(labels) for labels in self.labels)


def content_digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    """A hash of acquired images and their labels: what a retrained classifier's key includes."""
    digest = hashlib.sha256(images.float().contiguous().numpy().tobytes())
    digest.update(labels.long().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def round_generator(seed: int, label: str, oracle: str, round_: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(hash_key("acquire", seed, label, oracle, round_)[:12], 16))


def active_stage(run: Run, ctx: Context, flows: dict[str, TrainedFlow]) -> dict[str, Any]:
    """Run the loop for ``ctx``'s seed; its rows and per-sample frames go to
    ``<out>/active/seed<S>.*`` (``collect`` joins them). Returns each oracle's
    test accuracy (run.json: ``active`` -> ``oracles`` -> seed)."""
    import pandas as pd

    suite, splits = run.suite, run.splits
    active = suite.active
    assert active is not None and splits.pool_images is not None and splits.pool_labels is not None
    flow = next(iter(flows.values())).flow if flows else None
    base = replace(ctx, generator=flow)
    oracles = _oracles(run, base)
    test_accuracy = {
        label: float((oracle.label(base, splits.test_images, splits.test_labels) == splits.test_labels).float().mean())
        for label, oracle in oracles.items()
    }
    trajectories = _trajectories(run, base)
    rows: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    hits: dict[tuple[str, str, int], np.ndarray] = {}
    with task(f"active learning seed {ctx.seed}", len(trajectories) * (active.rounds + 1)) as advance:
        for trajectory in trajectories:
            model, trajectory.key = ctx.classifier, ctx.classifier_key
            for round_ in range(active.rounds + 1):
                rctx = _round_context(run, base, trajectory, model)
                round_rows, frame, hit = _evaluate(run, rctx, trajectory, round_)
                rows += round_rows
                frames.append(frame)
                hits[(trajectory.spec.label, trajectory.oracle.label, round_)] = hit
                if round_ < active.rounds:
                    rows += _acquire(run, rctx, trajectory, oracles, round_)
                    model = _retrain(run, rctx, trajectory, model)
                advance()
    rows += _gains(run, trajectories, hits, ctx.seed)
    folder = run.out / FOLDER
    table = pd.DataFrame(rows)
    atomic_write(folder / f"seed{ctx.seed}.csv", lambda tmp: table.to_csv(tmp, index=False))
    scores = pd.concat(frames, ignore_index=True)
    atomic_write(
        folder / f"seed{ctx.seed}_scores.csv.gz", lambda tmp: scores.to_csv(tmp, index=False, compression="gzip")
    )
    return {label: {"test_accuracy": accuracy} for label, accuracy in test_accuracy.items()}


def _oracles(run: Run, base: Context) -> dict[str, Any]:
    """Every oracle the loop uses, by label, prepared on all labelled training data (the pool included)."""
    splits = run.splits
    assert splits.pool_images is not None and splits.pool_labels is not None
    images = torch.cat([splits.train_images, splits.pool_images])
    labels = torch.cat([splits.train_labels, splits.pool_labels])

    train_on_all = _trainer(run, base, images, labels, "active-oracle-classifier", base.classifier_key, "oracle")
    octx = replace(base, train_images=images, train_labels=labels, train_classifier=train_on_all)
    assert run.suite.active is not None
    specs = [ComponentSpec(POOL_ORACLE), *run.suite.active.oracles]
    oracles = {}
    for spec in specs:
        oracle = run.registry.create("oracle", spec.name, spec.options)
        if hasattr(oracle, "prepare"):
            torch.manual_seed(base.seed)
            oracle.prepare(octx)
        oracles[spec.label] = oracle
    return oracles


def _trajectories(run: Run, base: Context) -> list[Trajectory]:
    assert run.suite.active is not None and run.splits.pool_labels is not None
    pool = torch.arange(len(run.splits.pool_labels))
    out = []
    for spec in run.suite.active.strategies:
        acquirer = run.registry.create("acquirer", spec.name, spec.options)
        oracles = run.suite.active.oracles if getattr(acquirer, "generates", False) else (ComponentSpec(POOL_ORACLE),)
        out += [Trajectory(spec, acquirer, oracle, pool.clone(), base.classifier_key) for oracle in oracles]
    return out


def _trainer(
    run: Run, base: Context, images: torch.Tensor, labels: torch.Tensor, tag: str, key: str, what: str
) -> Callable[..., torch.nn.Module]:
    """A ``Context.train_classifier`` training the suite's classifier on
    ``images``/``labels`` (or a ``subset`` of them, with other ``options``),
    cached under ``tag``, ``key`` (what the images are) and its own arguments."""

    def train(
        other_seed: int, subset: torch.Tensor | None = None, options: dict[str, Any] | None = None
    ) -> torch.nn.Module:
        spec = run.suite.classifier
        if options:
            spec = replace(spec, options={**spec.options, **options})
        x, y = (images, labels) if subset is None else (images[subset], labels[subset])
        digest = None if subset is None else subset_digest(subset)
        cached = hash_key(tag, key, spec_parts(run.registry, "classifier", spec), other_seed, digest)
        label = f"{spec.label} seed {other_seed} on {len(y)} images ({what})"
        return fitted(run.registry, run.store, spec, run.splits.dataset, x, y, other_seed, base.device, cached, label)

    return train


def _round_context(run: Run, base: Context, trajectory: Trajectory, model: torch.nn.Module) -> Context:
    """The context of one round's classifier: its key, its training images (split + acquired)."""
    images = torch.cat([run.splits.train_images, *trajectory.images])
    labels = torch.cat([run.splits.train_labels, *trajectory.labels])
    key = trajectory.key

    def artifact(stage: str, parts: Any, build: Any, check: Any = None) -> dict[str, Any]:
        return run.store.get_or_build(stage, hash_key(stage, key, parts), build, check)

    train_other = _trainer(run, base, images, labels, "active-other", key, "active")

    return replace(
        base,
        classifier=model,
        classifier_key=key,
        train_images=images,
        train_labels=labels,
        artifact=artifact,
        train_classifier=train_other,
    )


def _columns(trajectory: Trajectory, round_: int, labels: int) -> dict[str, Any]:
    return {"round": round_, "labels": labels, "strategy": trajectory.spec.label, "oracle": trajectory.oracle.label}


def _evaluate(
    run: Run, rctx: Context, trajectory: Trajectory, round_: int
) -> tuple[list[dict[str, Any]], pd.DataFrame, np.ndarray]:
    """The suite's metric rows on the clean test split for this round's classifier, its per-sample frame and hits."""
    running(f"evaluate {trajectory.spec.label} round {round_} ({trajectory.oracle.label})")
    scorers = [Scorer(spec, run.registry, rctx) for spec in run.suite.scorers]
    probabilities = any(getattr(run.registry.get("metric", m), "needs_probabilities", False) for m in run.suite.metrics)
    scored = score_cell(run, rctx, scorers, Cell(), probabilities=probabilities)
    rows, frame = detection_rows(run, rctx.seed, Cell(), scored)
    columns = _columns(trajectory, round_, len(rctx.train_labels))
    for name, value in columns.items():
        frame[name] = value
    rows = [{k: v for k, v in row.items() if k != REPLICATES} for row in rows]  # active.csv keeps no replicates
    return [{**row, **columns} for row in rows], frame, scored.hit


def _acquire(
    run: Run, rctx: Context, trajectory: Trajectory, oracles: dict[str, Any], round_: int
) -> list[dict[str, Any]]:
    """Acquire and label one round's images; returns the acquisition's rows."""
    from probebench.pipeline.data import check_images

    assert run.suite.active is not None and run.splits.pool_images is not None and run.splits.pool_labels is not None
    budget = min(run.suite.active.budget, len(trajectory.remaining))
    pool = run.splits.pool_images[trajectory.remaining]
    generator = round_generator(rctx.seed, trajectory.spec.label, trajectory.oracle.label, round_)
    torch.manual_seed(rctx.seed)
    running(f"acquirer {trajectory.spec.label} round {round_ + 1} ({trajectory.oracle.label})")
    acquisition = trajectory.acquirer.acquire(rctx, pool, budget, generator)
    where = f"acquirer {trajectory.spec.label!r} round {round_}"
    check_images(acquisition.images, where, tuple(rctx.shape))
    source = torch.as_tensor(acquisition.source, dtype=torch.long).cpu()
    generated = torch.as_tensor(acquisition.generated, dtype=torch.bool).cpu()
    if len(acquisition.images) != budget or source.shape != (budget,) or generated.shape != (budget,):
        raise ValueError(f"{where}: expected {budget} images with source and generated of length {budget}")
    if len(source) and (source.min() < 0 or source.max() >= len(pool)):
        raise ValueError(f"{where}: source indices outside the pool of {len(pool)}")
    if generated.any() and not getattr(trajectory.acquirer, "generates", False):
        raise ValueError(f"{where}: returned generated images but does not declare generates = True")
    images = acquisition.images.detach().cpu().float()
    pool_index = trajectory.remaining[source]
    source_labels = run.splits.pool_labels[pool_index]
    labels = source_labels.clone()  # pool images: their true label
    if generated.any():
        oracle = oracles[trajectory.oracle.label]
        labels[generated] = torch.as_tensor(
            oracle.label(rctx, images[generated], source_labels[generated]), dtype=torch.long
        ).cpu()
    predicted = rctx.forward(images)[0].argmax(dim=1)
    trajectory.remaining = trajectory.remaining[~torch.isin(trajectory.remaining, pool_index)]
    trajectory.images.append(images)
    trajectory.labels.append(labels)
    _save(run.out / FOLDER, trajectory, rctx.seed, round_, images, labels, source_labels, pool_index, generated)
    columns = _columns(trajectory, round_, len(rctx.train_labels))
    keys = {**Cell().columns(run.suite, rctx.seed), "method": trajectory.spec.label, **columns}
    boot = run.suite.bootstrap
    rows = [{**keys, **_row("acquired-miss-rate", (predicted != labels).numpy(), boot)}]
    if generated.any():
        disagree = (labels[generated] != source_labels[generated]).numpy()
        rows.append({**keys, **_row("oracle-source-disagreement", disagree, boot)})
    return rows


def _retrain(run: Run, rctx: Context, trajectory: Trajectory, previous: torch.nn.Module) -> torch.nn.Module:
    """The classifier on the training split plus everything acquired, cached by the acquired content."""
    assert run.suite.active is not None
    warm = run.suite.active.warm_start
    acquired_images, acquired_labels = torch.cat(trajectory.images), torch.cat(trajectory.labels)
    parent = trajectory.key if warm else ""  # a warm start depends on the model it starts from
    key = hash_key(
        "active-classifier", trajectory.base_key, parent, content_digest(acquired_images, acquired_labels), warm
    )
    images = torch.cat([run.splits.train_images, acquired_images])
    labels = torch.cat([run.splits.train_labels, acquired_labels])
    init = {k: v.detach().cpu().clone() for k, v in previous.state_dict().items()} if warm else None
    label = f"{trajectory.spec.label} round {len(trajectory.images)} seed {rctx.seed} on {len(labels)} images"
    spec = run.suite.classifier
    model = fitted(
        run.registry, run.store, spec, run.splits.dataset, images, labels, rctx.seed, rctx.device, key, label, init
    )
    trajectory.key = key
    return model


def _gains(
    run: Run, trajectories: list[Trajectory], hits: dict[tuple[str, str, int], np.ndarray], seed: int
) -> list[dict[str, Any]]:
    """``gain-over-random`` rows: per strategy and round, test accuracy minus the
    ``random`` strategy's at the same round, paired over test images."""
    baseline = next((t for t in trajectories if t.spec.name == BASELINE), None)
    if baseline is None:
        return []
    assert run.suite.active is not None
    rows = []
    for trajectory in trajectories:
        if trajectory is baseline:
            continue
        for round_ in range(1, run.suite.active.rounds + 1):
            mine = hits[(trajectory.spec.label, trajectory.oracle.label, round_)].astype(float)
            theirs = hits[(baseline.spec.label, baseline.oracle.label, round_)].astype(float)
            labels = len(run.splits.train_labels) + sum(len(y) for y in trajectory.labels[:round_])
            keys = {**Cell().columns(run.suite, seed), "method": trajectory.spec.label}
            row = _row("gain-over-random", mine - theirs, run.suite.bootstrap)
            rows.append({**keys, **row, **_columns(trajectory, round_, labels)})
    return rows


def _save(
    folder: Path,
    trajectory: Trajectory,
    seed: int,
    round_: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    source_labels: torch.Tensor,
    pool_index: torch.Tensor,
    generated: torch.Tensor,
) -> None:
    """The acquired images with their labels (``.pt``), and for a generating
    strategy's first acquisition a PNG grid of its generated images with the
    oracle's label and the source's."""
    name = f"{trajectory.spec.label}_{trajectory.oracle.label}_seed{seed}_round{round_}"
    payload = {
        "images": images,
        "labels": labels,
        "source_labels": source_labels,
        "pool_index": pool_index,
        "generated": generated,
    }
    atomic_write(folder / f"{name}.pt", lambda tmp: torch.save(payload, tmp))
    if round_ == 0 and generated.any():
        from probebench.report.grids import acquired_grid

        title = f"{trajectory.spec.label}, seed {seed}: generated images labelled by {trajectory.oracle.label}"
        shown = generated.nonzero().squeeze(1)[:32]
        atomic_write(
            folder / f"{trajectory.spec.label}_{trajectory.oracle.label}_seed{seed}_grid.png",
            lambda tmp: acquired_grid(tmp, images[shown], labels[shown], source_labels[shown], title),
        )


def collect(out: Path) -> None:
    """Join the seeds' ``active/seed*.csv`` into ``active.csv`` (results.csv's
    columns, then ``COLUMNS``) and their per-sample frames into ``active_scores.csv.gz``."""

    import pandas as pd

    from probebench.results import COLUMNS as RESULT_COLUMNS
    from probebench.results import scores_file_bytes

    folder = out / FOLDER
    tables = [pd.read_csv(p) for p in sorted(folder.glob("seed*.csv"))]
    if not tables:
        return
    table = pd.concat(tables, ignore_index=True)[RESULT_COLUMNS + COLUMNS]
    atomic_write(out / TABLE, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    scores = pd.concat([pd.read_csv(p) for p in sorted(folder.glob("seed*_scores.csv.gz"))], ignore_index=True)
    data = scores_file_bytes(scores)
    atomic_write(out / SCORES, lambda tmp: tmp.write_bytes(data))
