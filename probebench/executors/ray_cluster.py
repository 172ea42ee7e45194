"""The Ray executor: every task of the graph a Ray task, each waiting on the
tasks it takes inputs from, so independent seeds and cells spread over the
cluster's workers.

Artifacts travel through the content-addressed cache, which every worker
opens at the driver's cache path (a shared disk on a cluster; see
docs/cluster.md). A task's in-memory inputs (a trained classifier, a seed's
scorers) never leave the worker that needs them: a worker runs the task's
inputs itself, which the cache makes loads, not recomputation, and keeps
them for the next task of the same run. Only each task's ``public`` output
(rows, per-sample frames) and the component failures it recorded travel back
to the driver, which joins them in graph order: the same bytes as a local run.

Every task runs torch on the driver's number of threads (``torch.get_num_threads()``,
which ``OMP_NUM_THREADS`` sets) and asks Ray for a CPU per thread: a
gradient summed over two threads differs in its last bits from one summed
over one, so the same bytes need the same thread count. Run the driver with
``OMP_NUM_THREADS=1`` for one task per CPU (a local run with it gives the
same bytes again).

A worker that dies is replaced and its task retried (``max_retries``); the
cache's atomic writes make a half-done task invisible. A component that
raises fails only its own cells, recorded as locally; any other error stops
the run with the error a local run would raise. Ctrl-C cancels the
outstanding tasks.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probebench.errors import UserError

if TYPE_CHECKING:
    from probebench.executors.object_store import Shipment
    from probebench.pipeline.graph import Graph, Task
    from probebench.pipeline.stage import Run
    from probebench.registry import Registry

INSTALL = "pip install 'probebench[ray]'"
MAX_RETRIES = 3  # a task whose worker died is run again this often


def import_ray() -> Any:
    """The ``ray`` module, or a one-line UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, which is not installed; install it with {INSTALL}") from None
    return ray


@dataclass(frozen=True)
class RunSpec:
    """What a worker needs to rebuild the driver's ``Run``: plain and picklable."""

    suite: Any
    builtin: tuple[str, ...]
    in_process: tuple[str, ...]  # plugins added in the driver's process (importable modules)
    disabled: tuple[str, ...]
    autoload: bool
    cache: str
    out: str

    @classmethod
    def of(cls, run: Run) -> RunSpec:
        plugins = run.registry.plugins.values()
        suite = run.suite  # paths absolute: a worker's working folder is not the driver's
        if suite.data_root:
            suite = replace(suite, data_root=str(Path(suite.data_root).resolve()))
        return cls(
            suite,
            tuple(p.module for p in plugins if p.builtin),
            tuple(p.module for p in plugins if p.distribution == "in-process"),
            tuple(sorted(run.registry.disabled)),
            any(not p.builtin and p.distribution != "in-process" for p in plugins),
            str(run.store.root.resolve()),
            str(Path(run.out).resolve()),
        )

    def registry(self) -> Registry:
        from probebench.registry import Registry

        registry = Registry(self.builtin, autoload=self.autoload, disabled=self.disabled)
        for module in self.in_process:
            registry.add_plugin(importlib.import_module(module))
        return registry

    def run(self, reader: Any = None) -> Run:
        """The run in this worker: on the driver's cache and folder, or with a
        ``reader`` (``--artifacts object-store``) on its own cache and a private folder."""
        from probebench.cache import ArtifactStore
        from probebench.executors.object_store import ShippingStore, private_out
        from probebench.pipeline.data import load_splits
        from probebench.pipeline.stage import Run

        registry = self.registry()
        store = ArtifactStore(self.cache) if reader is None else ShippingStore(reader)
        suite = self.suite
        with store.active():  # the dataset's own files are cached under the store
            pool = suite.active.pool if suite.active else 0
            splits = load_splits(registry, suite.dataset, suite.data_root, suite.validation, pool)
        return Run(suite, registry, store, splits, Path(self.out) if reader is None else private_out())


class LazyRuns(Sequence):
    """In a worker: the runs of a graph, each rebuilt from its spec when a task first needs it."""

    def __init__(self, specs: tuple[RunSpec, ...], readers: tuple[Any, ...]) -> None:
        self.specs, self.readers = specs, readers
        self.built: dict[int, Run] = {}

    def __getitem__(self, index: Any) -> Any:
        if index not in self.built:
            self.built[index] = self.specs[index].run(self.readers[index] if self.readers else None)
        return self.built[index]

    def __len__(self) -> int:
        return len(self.specs)


@dataclass(frozen=True)
class TaskResult:
    """What a Ray task sends back: its public output and the failures it recorded."""

    public: Any
    failures: list[dict]
    shipment: Shipment | None = None  # --artifacts object-store: what the driver writes for the task


@dataclass(frozen=True)
class Work:
    """What every Ray task of one execution shares."""

    token: str  # unique per execution: a worker keeps one execution's outputs at a time
    specs: tuple[RunSpec, ...]  # the runs of a combined graph (``pipeline/combined.py``)
    threads: int  # torch's intra-op threads: the driver's, since a gradient's bytes depend on them
    readers: tuple[Any, ...] = ()  # --artifacts object-store: per run, a CacheReader of the driver's cache


_worker: dict[str, Any] = {}  # in a worker process: the token, runs and outputs of the execution it serves


def run_task(work: Work, graph: Graph, task_id: str, *_inputs_done: TaskResult) -> TaskResult:
    """Run one task in this worker (the Ray task body); its inputs' outputs
    are derived here from the cache when this worker has not made them."""
    import torch

    from probebench.allocator import reuse_freed_memory
    from probebench.executors.object_store import ShippingStore, snapshot
    from probebench.pipeline.failures import Failures

    reuse_freed_memory()  # as the driver does (probebench/allocator.py)
    task = graph.task(task_id)
    torch.set_num_threads(task.threads or work.threads)  # a fit task's own count (pipeline/fit.py)
    if _worker.get("token") != work.token:
        _worker.clear()
        _worker.update(token=work.token, runs=LazyRuns(work.specs, work.readers), outputs={})
    runs: LazyRuns = _worker["runs"]
    outputs: dict[str, Any] = _worker["outputs"]
    run = runs[task.run]
    before = snapshot(run.out) if work.readers else {}
    with run.store.active():
        for input_id in task.inputs:
            _derive(runs, graph, outputs, input_id)
        own = Failures()
        run.failures = own
        outputs[task_id] = task.call(runs, *(outputs[i] for i in task.inputs))
    shipment = run.store.shipment(run.out, before) if isinstance(run.store, ShippingStore) else None
    return TaskResult(graph.public(task_id, outputs[task_id]), own.entries, shipment)


def _derive(runs: LazyRuns, graph: Graph, outputs: dict[str, Any], task_id: str) -> None:
    """Make ``task_id``'s output in this worker (its inputs first); the
    failures it records are the ones its own Ray task reported already."""
    from probebench.pipeline.failures import Failures

    if task_id in outputs:
        return
    task = graph.task(task_id)
    for input_id in task.inputs:
        _derive(runs, graph, outputs, input_id)
    runs[task.run].failures = Failures()
    outputs[task_id] = task.call(runs, *(outputs[i] for i in task.inputs))


class RayExecutor:
    """Runs a graph on the Ray cluster at ``address`` (None: ``$RAY_ADDRESS``,
    else a new local one with every core of this machine)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, artifacts: str = "shared") -> None:
        self.address, self.num_cpus, self.artifacts = address, num_cpus, artifacts
        self.started = False  # whether this executor started Ray (then it stops it on Ctrl-C)

    def execute(self, graph: Graph, runs: Sequence[Run]) -> Any:
        """Run ``graph``, a combined graph (``pipeline/combined.py``) of ``runs``."""
        import uuid

        import torch

        from probebench.executors.object_store import start_reader
        from probebench.executors.progress import StageProgress

        ray = import_ray()
        self._connect(ray)
        remote = ray.remote(run_task)
        readers: tuple[Any, ...] = ()
        if self.artifacts == "object-store":  # one reader per driver cache
            by_root = {root: start_reader(ray, root) for root in {r.store.root.resolve() for r in runs}}
            readers = tuple(by_root[r.store.root.resolve()] for r in runs)
        work = Work(uuid.uuid4().hex, tuple(RunSpec.of(r) for r in runs), torch.get_num_threads(), readers)
        work_ref = ray.put(work)
        graph_ref = ray.put(graph)
        refs: dict[str, Any] = {}
        stages: dict[Any, Task] = {}
        for task in graph:
            if task.id == graph.target:
                continue
            options = remote.options(**ray_options(task, work.threads))
            refs[task.id] = options.remote(work_ref, graph_ref, task.id, *(refs[i] for i in task.inputs))
            stages[refs[task.id]] = task
        progress = StageProgress(replace(graph, tasks=tuple(stages.values())), "run on ray")
        results: dict[str, TaskResult] = {}
        try:
            self._wait(ray, runs, refs, stages, results, progress)
        except BaseException as exc:
            for ref in refs.values():
                ray.cancel(ref, force=True)
            progress.close(ok=False)
            if isinstance(exc, KeyboardInterrupt) and self.started:
                ray.shutdown()  # the CLI ends with os._exit(130), which would skip Ray's own clean-up
            raise
        progress.close(ok=True)
        for task_id in refs:  # in graph order, each failure once (a scorer's prepare fails every cell alike)
            failures = runs[graph.task(task_id).run].failures
            for failure in results[task_id].failures:
                if failure not in failures.entries:
                    failures.add(failure)
        target = graph.task(graph.target)
        return target.call(runs, *(results[i].public for i in target.inputs))

    def _connect(self, ray: Any) -> None:
        if ray.is_initialized():
            return
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
            self.started = True

    def _wait(
        self,
        ray: Any,
        runs: Sequence[Run],
        refs: dict[str, Any],
        stages: dict[Any, Task],
        results: dict[str, TaskResult],
        progress: Any,
    ) -> None:
        done: set[str] = set()
        ready = [t for t in stages.values() if not t.inputs]
        for task in ready:
            progress.started(task.stage)
        pending = list(refs.values())
        while pending:
            finished, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            progress.tick()
            for ref in finished:
                task = stages[ref]
                try:
                    results[task.id] = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    raise _cause(exc) from None
                shipment = results[task.id].shipment
                if shipment is not None:  # --artifacts object-store: the driver writes the task's files
                    shipment.deliver(runs[task.run].store, runs[task.run].out)
                done.add(task.id)
                progress.finished(task.stage, failed=bool(results[task.id].failures))
                for other in stages.values():  # now ready: every input done
                    if task.id in other.inputs and all(i in done for i in other.inputs):
                        progress.started(other.stage)


def ray_options(task: Task, threads: int) -> dict[str, Any]:
    """The options of ``task``'s Ray task: its resources (``pipeline/resources.py``),
    a CPU per torch thread, retries, and its id as its name."""
    return {
        "num_cpus": task.resources.cpus * (task.threads or threads),  # a fit task's own count (pipeline/fit.py)
        "num_gpus": task.resources.gpus,
        "max_retries": MAX_RETRIES,
        "name": task.id,
    }


def _cause(exc: Any) -> BaseException:
    """The exception the task raised, as a local run would have raised it."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc
