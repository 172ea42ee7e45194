"""A run as an explicit graph of stage tasks, built once from the suite.

Per seed: ``train`` the classifier (the ``Context`` every later task of the
seed sees) -> ``generators`` (flows, their quality rows) -> ``prepare`` (the
scorers, the correction setup and its tuning on validation) -> per test cell
``score`` (predictions, every scorer's confidences, the cell's metric rows
and per-sample frame) and ``correct`` (every corrector on the cell); one
``collect`` task joins every output into the run's rows, per-sample frames
and header entries, in the graph's order.

A task is a pure function of the ``Run`` (suite, registry, artifact store,
splits, output folder) and its inputs' outputs, named by ``inputs`` (task
ids). Executors (``probebench.executors``) run the same graph; the order of
``Graph.tasks`` is a topological order, and running the tasks in it is what a
local run always did, so a result never depends on the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from probebench.pipeline.cells import Cell, suite_cells
from probebench.pipeline.fit import fit_tasks

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from probebench.pipeline import correct as correction
    from probebench.pipeline.context import Context
    from probebench.pipeline.generate import TrainedFlow
    from probebench.pipeline.score import Scorer
    from probebench.pipeline.stage import Run

COLLECT = "collect"


@dataclass(frozen=True)
class Resources:
    """What one task asks of a worker (Ray's ``num_cpus``/``num_gpus``)."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class Task:
    """One stage task: ``call(run, *outputs of inputs)`` returns its output.

    ``id`` names it in the graph (``score/seed=0/noise-3``); ``stage`` is
    the stage it belongs to; ``group`` is the progress bar it belongs to
    (None: none), which it advances by ``steps`` when it ends. ``public``
    maps its output to the plain, picklable part the graph's target (the
    collector) reads; an output may hold live models, which never leave the
    process that made them.
    """

    id: str
    stage: str
    inputs: tuple[str, ...]
    call: Callable[..., Any]
    group: str | None = None
    steps: int = 1
    resources: Resources = field(default_factory=Resources)
    public: Callable[[Any], Any] | None = None  # None: nothing
    run: int = 0  # in a graph of several suites' runs (``combined.py``): the index of this task's run
    threads: int | None = None  # torch's threads for this task (None: the run's); see pipeline/fit.py
    done: Callable[[Run], bool] | None = None  # True: its work is in the store already, skip the call


@dataclass(frozen=True)
class Graph:
    """Tasks in a topological order; ``target`` is the id whose output is the
    run's. The target is called with its inputs' ``public`` outputs."""

    tasks: tuple[Task, ...]
    target: str = COLLECT

    def __post_init__(self) -> None:
        seen: dict[str, Task] = {}
        for task in self.tasks:
            missing = [i for i in task.inputs if i not in seen]
            if task.id in seen or missing:
                raise ValueError(f"task {task.id!r}: duplicate id or inputs {missing} not before it")
            seen[task.id] = task
        object.__setattr__(self, "by_id", seen)

    def task(self, task_id: str) -> Task:
        return self.by_id[task_id]  # type: ignore[attr-defined]

    def public(self, task_id: str, output: Any) -> Any:
        """The part of a task's output that the target reads (None: nothing)."""
        task = self.task(task_id)
        return None if task.public is None else task.public(output)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def groups(self) -> dict[str, tuple[int, int]]:
        """Each progress group's (tasks, steps)."""
        sizes: dict[str, tuple[int, int]] = {}
        for task in self.tasks:
            if task.group is not None:
                tasks, steps = sizes.get(task.group, (0, 0))
                sizes[task.group] = (tasks + 1, steps + task.steps)
        return sizes


@dataclass
class SeedSetup:
    """What the ``prepare`` task of a seed hands its cell tasks."""

    scorers: list[Scorer]
    corrections: correction.Setup | None
    calibration: dict[str, Any] | None  # the correctors' thresholds and where they came from (run.json)
    probabilities: bool  # some metric needs the classifier's softmax


@dataclass
class CellScores:
    """What the ``score`` task of a cell makes."""

    rows: list[dict[str, Any]]
    frame: pd.DataFrame
    facts: dict[str, dict[str, Any]]  # by scorer label: what it learnt in ``prepare``


@dataclass
class Collected:
    """The run's rows, per-sample frames and header entries, in graph order."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    samples: list[pd.DataFrame] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)


def build_graph(run: Run, device: torch.device) -> Graph:
    """The graph of one run of ``run.suite`` (its seeds and test cells) on ``device``."""
    suite = run.suite
    cells = suite_cells(suite, run.splits.cells)
    from probebench.pipeline.resources import stage_resources

    tasks: list[Task] = []
    ask = {stage: stage_resources(run, stage, device) for stage in ("train", "generators", "prepare", "active")}
    scoring, correcting = stage_resources(run, "score", device), stage_resources(run, "correct", device)
    for seed in suite.seeds:
        train, generators, prepare = f"train/seed={seed}", f"generators/seed={seed}", f"prepare/seed={seed}"
        fits = fit_tasks(run, seed, device)  # the seed's models, trained into the store (pipeline/fit.py)
        tasks += [replace(fit, resources=ask["train"]) for fit in fits]
        fitted = tuple(fit.id for fit in fits)
        tasks.append(
            Task(train, "train", fitted, partial(train_task, seed=seed, device=device), resources=ask["train"])
        )
        tasks.append(
            Task(generators, "generators", (train,), generators_task, public=first, resources=ask["generators"])
        )
        tasks.append(
            Task(prepare, "prepare", (train, generators), prepare_task, public=calibration, resources=ask["prepare"])
        )
        if suite.active is not None:  # the active-learning loop (pipeline/active.py)
            tasks.append(
                Task(
                    f"active/seed={seed}",
                    "active",
                    (train, generators),
                    active_task,
                    public=itself,
                    resources=ask["active"],
                )
            )
        group = f"score seed {seed}"  # one step per cell, when its last task ends
        for cell in cells:
            where = f"seed={seed}/{cell.name}-{cell.severity}"
            score = partial(score_task, cell=cell)
            steps = 0 if suite.correctors else 1
            inputs = (train, prepare)
            tasks.append(Task(f"score/{where}", "score", inputs, score, group, steps, scoring, public=itself))
            if suite.correctors:
                correct = partial(correct_task, cell=cell)
                tasks.append(Task(f"correct/{where}", "correct", inputs, correct, group, 1, correcting, public=itself))
    kinds = [(t.id, t.stage) for t in tasks]
    tasks.append(Task(COLLECT, COLLECT, tuple(i for i, _ in kinds), partial(collect_task, stages=kinds)))
    return Graph(tuple(tasks))


# -- the tasks ------------------------------------------------------------------------
def train_task(run: Run, *_fitted: None, seed: int, device: torch.device) -> Context:
    """The seed's classifier, trained or loaded (its fit task, ``_fitted``, has
    stored it), in the ``Context`` components see."""
    from probebench.cache import hash_key
    from probebench.pipeline.context import Context
    from probebench.pipeline.train import save_classifier_figures, trained_classifier

    suite, splits = run.suite, run.splits

    def train_other(
        other_seed: int, subset: torch.Tensor | None = None, options: dict[str, Any] | None = None
    ) -> torch.nn.Module:
        spec = suite.classifier
        if options:
            spec = replace(spec, options={**spec.options, **options})
        return trained_classifier(
            run.registry, run.store, suite.dataset, spec, splits, other_seed, device, subset, another=True
        )[0]

    model, key = trained_classifier(run.registry, run.store, suite.dataset, suite.classifier, splits, seed, device)
    save_classifier_figures(run, model, key, seed)

    def artifact(
        stage: str, parts: Any, build: Callable[[], dict[str, Any]], check: Callable[[dict], object] | None = None
    ) -> dict[str, Any]:
        return run.store.get_or_build(stage, hash_key(stage, key, parts), build, check)

    dataset = splits.dataset
    return Context(
        model,
        key,
        dataset.num_classes,
        tuple(dataset.shape),
        device,
        seed,
        suite.batch_size,
        splits.train_images,
        splits.train_labels,
        artifact,
        train_other,
        registry=run.registry,
        val_images=splits.val_images,
        val_labels=splits.val_labels,
        test_images=splits.test_images,
        test_labels=splits.test_labels,
    )


def generators_task(run: Run, ctx: Context) -> tuple[list[dict[str, Any]], dict[str, TrainedFlow]]:
    """The seed's flows (trained or loaded) and their quality rows."""
    from probebench.pipeline.generate import generator_stage

    return generator_stage(run, ctx)


def prepare_task(run: Run, ctx: Context, generated: tuple[list, dict[str, TrainedFlow]]) -> SeedSetup:
    """The seed's scorers (prepared lazily by the cells that need them) and,
    with correctors, their setup tuned on the validation split."""
    from probebench.pipeline import correct as correction
    from probebench.pipeline.score import Scorer

    scorers = [Scorer(spec, run.registry, ctx) for spec in run.suite.scorers]
    corrections = _correction_setup(run, ctx, scorers, generated[1]) if run.suite.correctors else None
    if corrections is not None:

        def on_failure(label: str, exc: Exception) -> None:
            run.failures.record("corrector", label, "tune", f"seed={ctx.seed} validation", exc)

        correction.tune(ctx, corrections, run.store, on_failure=on_failure)
    calibration = corrections.calibration() if corrections is not None else None
    probabilities = any(getattr(run.registry.get("metric", m), "needs_probabilities", False) for m in run.suite.metrics)
    return SeedSetup(scorers, corrections, calibration, probabilities)


def score_task(run: Run, ctx: Context, setup: SeedSetup, *, cell: Cell) -> CellScores:
    """One cell's predictions and confidences, judged: its metric rows and
    per-sample frame, and what the scorers prepared so far learnt about themselves."""
    from probebench.pipeline.evaluate import detection_rows
    from probebench.pipeline.score import score_cell

    scored = score_cell(run, ctx, setup.scorers, cell, probabilities=setup.probabilities)
    rows, frame = detection_rows(run, ctx.seed, cell, scored)
    return CellScores(rows, frame, {s.spec.label: s.facts for s in setup.scorers if s.facts})


def active_task(run: Run, ctx: Context, generated: tuple[list, dict[str, TrainedFlow]]) -> dict[str, Any]:
    """The seed's active-learning loop; its rows go to the run folder's
    ``active/`` (joined by ``active.collect``), its oracles' facts to run.json."""
    from probebench.pipeline.active import active_stage

    return active_stage(run, ctx, generated[1])


def correct_task(run: Run, ctx: Context, setup: SeedSetup, *, cell: Cell) -> list[dict[str, Any]]:
    """Every corrector of the seed on one cell: its rows (none when the setup failed)."""
    from probebench.pipeline import correct as correction

    if setup.corrections is None:
        return []
    return correction.correct_cell(run, ctx, setup.corrections, cell)


def collect_task(run: Run, *outputs: Any, stages: list[tuple[str, str]]) -> Collected:
    """Every task's public output joined in graph order: rows, per-sample
    frames, and per seed the correction calibration and what the scorers
    learnt about themselves (in the suite's scorer order)."""
    collected = Collected()
    calibrations: dict[str, Any] = {}
    facts: dict[str, dict[str, Any]] = {}
    for (task_id, stage), output in zip(stages, outputs, strict=True):
        seed = task_id.split("/")[1].removeprefix("seed=") if "/" in task_id else ""
        if stage == "generators":
            collected.rows += output
        elif stage == "prepare" and output is not None:
            calibrations[seed] = output
        elif stage == "score":
            collected.rows += output.rows
            collected.samples.append(output.frame)
            facts.setdefault(seed, {}).update(output.facts)
        elif stage == "correct":
            collected.rows += output
        elif stage == "active":  # per seed: the oracles' test accuracy, each line's seconds
            for part, value in output.items():
                collected.header.setdefault("active", {}).setdefault(part, {})[seed] = value
    order = [spec.label for spec in run.suite.scorers]
    learnt = {seed: {k: f[k] for k in order if k in f} for seed, f in facts.items() if f}
    if calibrations:
        collected.header["correction"] = calibrations
    if learnt:  # what a component learnt about itself in prepare (e.g. a prober's training data)
        collected.header["component_facts"] = learnt
    return collected


def first(output: tuple) -> Any:
    return output[0]


def calibration(output: SeedSetup) -> dict[str, Any] | None:
    return output.calibration


def itself(output: Any) -> Any:
    return output


def _correction_setup(
    run: Run, ctx: Context, scorers: list[Scorer], flows: dict[str, TrainedFlow]
) -> correction.Setup | None:
    """Prepare the scorers that can guide correctors (``probebench.kinds.Guide``)
    and set the correctors up; None, with the failures recorded, when no guide
    or no flow survived."""
    from probebench.pipeline import correct as correction

    probers = {}
    for scorer in scorers:
        instance = scorer.prepared(run.failures) if scorer.guides else None
        if instance is not None:
            probers[scorer.spec.label] = correction.Guide(instance.p_hit, scorer.key)
    if not probers or (not flows and correction.needs_generators(run.suite.correctors, run.registry)):
        for spec in run.suite.correctors:
            run.failures.record(
                "corrector",
                spec.label,
                "setup",
                f"seed={ctx.seed}",
                RuntimeError("its prober or generator failed earlier in this run (see above)"),
            )
        return None
    return correction.setup(run.suite.correctors, run.registry, ctx, flows, probers)
