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
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from probebench.cache import atomic_write, hash_key
from probebench.console import console, running, task
from probebench.evaluate import without_replicates
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
    test accuracy and each line's seconds (run.json: ``active`` -> ``oracles``
    and ``seconds`` -> seed).

    The lines (a strategy and its oracle) are independent of each other, so
    each runs on one torch thread: in worker processes side by side when the
    run may use two or more (``probebench/executors/workers.py``), else one
    after another here; the same bytes either way. The oracles train first:
    the lines that need them wait for them, the others start at once."""
    import pandas as pd

    from probebench.executors.local import torch_threads
    from probebench.executors.object_store import ShippingStore
    from probebench.executors.workers import worker_count

    active = run.suite.active
    assert active is not None
    flow_label = next(iter(flows), None)
    base = replace(ctx, generator=flows[flow_label].flow if flow_label is not None else None)
    lines = _lines(run)
    # worker processes share the cache folder: not on a Ray worker whose artifacts travel through Ray
    shared = not isinstance(run.store, ShippingStore)
    workers = min(worker_count(), len(lines)) if ctx.device.type == "cpu" and shared else 1
    threads = 1 if ctx.device.type == "cpu" and len(lines) >= 2 else None
    what = f"active learning seed {ctx.seed}" + (f" in {workers} processes" if workers >= 2 else "")
    with torch_threads(threads), task(what, len(lines) * (active.rounds + 1)) as advance:
        if workers >= 2:
            followed = _side_by_side(run, ctx, flow_label, lines, workers, advance)
            oracles = _oracles(run, base)  # from the store: a worker trained them
        else:
            oracles = _oracles(run, base)
            followed = []
            for line in lines:
                followed.append(_follow(run, base, _trajectory(run, base, line), oracles))
                advance(active.rounds + 1)
        splits = run.splits
        test_accuracy = {
            label: float(
                (oracle.label(base, splits.test_images, splits.test_labels) == splits.test_labels).float().mean()
            )
            for label, oracle in oracles.items()
        }
    for line, result in zip(lines, followed, strict=True):
        console.print(
            f"active seed {ctx.seed} {line.name}: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
        )
    rows = [row for result in followed for row in result.rows] + _gains(run, lines, followed, ctx.seed)
    folder = run.out / FOLDER
    table = pd.DataFrame(rows)
    atomic_write(folder / f"seed{ctx.seed}.csv", lambda tmp: table.to_csv(tmp, index=False))
    scores = pd.concat([frame for result in followed for frame in result.frames], ignore_index=True)
    atomic_write(
        folder / f"seed{ctx.seed}_scores.csv.gz", lambda tmp: scores.to_csv(tmp, index=False, compression="gzip")
    )
    return {
        "oracles": {label: {"test_accuracy": accuracy} for label, accuracy in test_accuracy.items()},
        "seconds": {line.name: result.seconds for line, result in zip(lines, followed, strict=True)},
    }


@dataclass(frozen=True)
class Line:
    """One strategy labelled by one oracle (``generates``: the strategy makes images)."""

    spec: ComponentSpec
    oracle: ComponentSpec
    generates: bool

    @property
    def name(self) -> str:
        return f"{self.spec.label} ({self.oracle.label})"


@dataclass
class Followed:
    """What one line's loop made: rows, per-sample frames, test hits and
    labelled images per round, and seconds spent per phase (CPU time of the
    process that ran it, which ran nothing else meanwhile)."""

    rows: list[dict[str, Any]]
    frames: list[pd.DataFrame]
    hits: dict[int, np.ndarray]
    labels: dict[int, int]
    seconds: dict[str, float]


def _lines(run: Run) -> list[Line]:
    """The loop's lines: each strategy, once per oracle when it generates images."""
    assert run.suite.active is not None
    out = []
    for spec in run.suite.active.strategies:
        generates = bool(getattr(run.registry.get("acquirer", spec.name), "generates", False))
        oracles = run.suite.active.oracles if generates else (ComponentSpec(POOL_ORACLE),)
        out += [Line(spec, oracle, generates) for oracle in oracles]
    return out


def _trajectory(run: Run, base: Context, line: Line) -> Trajectory:
    assert run.splits.pool_labels is not None
    acquirer = run.registry.create("acquirer", line.spec.name, line.spec.options)
    pool = torch.arange(len(run.splits.pool_labels))
    return Trajectory(line.spec, acquirer, line.oracle, pool, base.classifier_key)


def _follow(run: Run, base: Context, trajectory: Trajectory, oracles: dict[str, Any]) -> Followed:
    """One line's rounds: evaluate, acquire, retrain, ..., evaluate."""
    import time

    assert run.suite.active is not None
    result = Followed([], [], {}, {}, {"evaluate": 0.0, "acquire": 0.0, "retrain": 0.0})

    def timed(phase: str, call: Callable[[], Any]) -> Any:
        started = time.process_time()
        value = call()
        result.seconds[phase] += time.process_time() - started
        return value

    model, trajectory.key = base.classifier, base.classifier_key
    for round_ in range(run.suite.active.rounds + 1):
        rctx = _round_context(run, base, trajectory, model)
        rows, frame, hit = timed("evaluate", partial(_evaluate, run, rctx, trajectory, round_))
        result.rows += rows
        result.frames.append(frame)
        result.hits[round_], result.labels[round_] = hit, len(rctx.train_labels)
        if round_ < run.suite.active.rounds:
            result.rows += timed("acquire", partial(_acquire, run, rctx, trajectory, oracles, round_))
            model = timed("retrain", partial(_retrain, run, rctx, trajectory, model))
    return result


def _side_by_side(
    run: Run, ctx: Context, flow_label: str | None, lines: list[Line], workers: int, advance: Any
) -> list[Followed]:
    """Every line's loop in ``workers`` worker processes, in the lines' order,
    the generating ones (which wait for the oracles) as soon as the oracles are trained."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from probebench.executors.workers import run_workers

    assert run.suite.active is not None
    ready = [i for i, line in enumerate(lines) if not line.generates]
    waiting = [i for i, line in enumerate(lines) if line.generates]
    results: dict[int, Followed] = {}
    with run_workers(run, workers) as submit:
        running = {submit(partial(_oracles_task, seed=ctx.seed, device=ctx.device)): -1}
        while running:
            while ready and len(running) < workers:
                i = ready.pop(0)
                call = partial(_follow_task, seed=ctx.seed, device=ctx.device, flow_label=flow_label, line=lines[i])
                running[submit(call)] = i
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                i = running.pop(future)
                value = future.result()
                if i < 0:  # the oracles are in the store: the generating lines may start, first
                    ready, waiting = waiting + ready, []
                else:
                    results[i] = value
                    advance(run.suite.active.rounds + 1)
    return [results[i] for i in range(len(lines))]


def _base_context(run: Run, seed: int, device: torch.device, flow_label: str | None) -> Context:
    """In a worker: the seed's context (classifier and flow from the store), as the driver has it."""
    from probebench.pipeline.generate import trained_generator
    from probebench.pipeline.graph import train_task

    ctx = train_task(run, seed=seed, device=device)
    if flow_label is None:
        return ctx
    spec = next(spec for spec in run.suite.generators if spec.label == flow_label)
    flow = trained_generator(run.registry, run.store, run.suite.dataset, spec, run.splits, seed, device)[0]
    return replace(ctx, generator=flow)


def _oracles_task(run: Run, *, seed: int, device: torch.device) -> None:
    """In a worker: train the seed's oracles into the store."""
    _oracles(run, _base_context(run, seed, device, None))


def _follow_task(run: Run, *, seed: int, device: torch.device, flow_label: str | None, line: Line) -> Followed:
    """In a worker: one line's loop (its oracles loaded from the store when it generates images)."""
    base = _base_context(run, seed, device, flow_label)
    oracles = _oracles(run, base) if line.generates else {}
    return _follow(run, base, _trajectory(run, base, line), oracles)


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


def _columns(line: Trajectory | Line, round_: int, labels: int) -> dict[str, Any]:
    return {"round": round_, "labels": labels, "strategy": line.spec.label, "oracle": line.oracle.label}


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
    rows = [without_replicates(row) for row in rows]  # active.csv keeps no replicates
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


def _gains(run: Run, lines: list[Line], followed: list[Followed], seed: int) -> list[dict[str, Any]]:
    """``gain-over-random`` rows: per line and round, test accuracy minus the
    ``random`` strategy's at the same round, paired over test images."""
    baseline = next((result for line, result in zip(lines, followed, strict=True) if line.spec.name == BASELINE), None)
    if baseline is None:
        return []
    assert run.suite.active is not None
    rows = []
    for line, result in zip(lines, followed, strict=True):
        if result is baseline:
            continue
        for round_ in range(1, run.suite.active.rounds + 1):
            gain = result.hits[round_].astype(float) - baseline.hits[round_].astype(float)
            keys = {**Cell().columns(run.suite, seed), "method": line.spec.label}
            row = _row("gain-over-random", gain, run.suite.bootstrap)
            rows.append({**keys, **row, **_columns(line, round_, result.labels[round_])})
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
