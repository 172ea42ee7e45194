"""Worker processes for a local run's fit tasks (``probebench/pipeline/fit.py``).

The fit tasks of a run train its models into the artifact store and depend on
nothing, and each runs torch on one thread: one model does not keep two cores
busy, so several train at once, each in a process of its own (a process, not
a thread: torch's global random generator, which dropout draws from, is one
per process). There are as many processes as torch has threads here
(``OMP_NUM_THREADS``, else the number of cores), started only when two or
more fit tasks still have work; each rebuilds the run from the driver's
``RunSpec`` (as a Ray worker does) and opens the same store. The driver then
loads the models, the same bytes as had it trained them itself on one thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from probebench.console import task

if TYPE_CHECKING:
    from probebench.executors.ray_cluster import RunSpec
    from probebench.pipeline.graph import Graph, Task
    from probebench.pipeline.stage import Run

_runs: dict[str, Run] = {}  # in a worker process: the runs it serves, by token


def concurrent_fits(graph: Graph, runs: Sequence[Run]) -> list[Task]:
    """The one-thread fit tasks without inputs that still have work, when they
    are two or more and torch has two or more threads here; else none. A
    task of run ``runs[task.run]`` (``pipeline/combined.py``)."""
    import torch

    pending = [t for t in graph if t.threads == 1 and not t.inputs and not (t.done and t.done(runs[t.run]))]
    return pending if torch.get_num_threads() >= 2 and len(pending) >= 2 else []


def fit_in_workers(tasks: list[Task], runs: Sequence[Run]) -> None:
    """Run ``tasks`` in worker processes, at most torch's thread count at
    once; a task that fails (or a worker that dies) is left to the task that
    loads its model, which trains it again and reports the failure."""
    import multiprocessing
    import uuid
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    from probebench.executors.ray_cluster import RunSpec

    specs = [(uuid.uuid4().hex, RunSpec.of(run)) for run in runs]
    workers = min(torch.get_num_threads(), len(tasks))
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        with task(f"fit {len(tasks)} models in {workers} processes", len(tasks)) as advance:
            futures = [
                pool.submit(_fit, *specs[item.run], runs[item.run].store.fresh_since, len(runs), item) for item in tasks
            ]
            for future in as_completed(futures):
                future.exception()  # the loading task retries and reports
                advance()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _fit(token: str, spec: RunSpec, fresh_since: int | None, count: int, item: Task) -> None:
    """A worker's side: rebuild the task's run (once per worker and run) and run
    the fit task on one thread; its call takes the graph's ``count`` runs and
    picks its own (``runs[item.run]``, the only one this worker rebuilds)."""
    import torch

    from probebench.allocator import reuse_freed_memory
    from probebench.cache import ArtifactStore
    from probebench.console import console

    reuse_freed_memory()
    torch.set_num_threads(1)
    console.quiet = True  # the driver shows the progress
    run = _runs.get(token)
    if run is None:
        run = _runs[token] = spec.run()
        run.store = ArtifactStore(spec.cache, fresh_since=fresh_since)
    runs: list[Any] = [None] * count
    runs[item.run] = run
    with run.store.active():
        item.call(runs)
