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

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from probebench.console import task

if TYPE_CHECKING:
    from concurrent.futures import Future

    from probebench.executors.ray_cluster import RunSpec
    from probebench.pipeline.graph import Graph, Task
    from probebench.pipeline.stage import Run

_runs: dict[str, Run] = {}  # in a worker process: the runs it serves, by token
WORKERS = "PROBEBENCH_WORKERS"


def worker_count() -> int:
    """How many worker processes a local run may keep busy: ``$PROBEBENCH_WORKERS``,
    else torch's thread count here. Each runs torch on one thread, so with
    ``OMP_NUM_THREADS=1`` (a shared machine) the variable is what lets a run use two cores."""
    value = os.environ.get(WORKERS, "").strip()
    if value:
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            from probebench.errors import UserError

            raise UserError(f"{WORKERS} must be a whole number >= 1, got {value!r}")
        return count
    import torch

    return torch.get_num_threads()


def concurrent_fits(graph: Graph, runs: Sequence[Run]) -> list[Task]:
    """The one-thread fit tasks without inputs that still have work, when they
    are two or more and ``worker_count()`` is two or more; else none. A
    task of run ``runs[task.run]`` (``pipeline/combined.py``)."""
    pending = [t for t in graph if t.threads == 1 and not t.inputs and not (t.done and t.done(runs[t.run]))]
    return pending if worker_count() >= 2 and len(pending) >= 2 else []


def fit_in_workers(tasks: list[Task], runs: Sequence[Run]) -> None:
    """Run ``tasks`` in worker processes, at most ``worker_count()`` at
    once; a task that fails (or a worker that dies) is left to the task that
    loads its model, which trains it again and reports the failure."""
    import multiprocessing
    import uuid
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from probebench.executors.ray_cluster import RunSpec

    specs = [(uuid.uuid4().hex, RunSpec.of(run)) for run in runs]
    workers = min(worker_count(), len(tasks))
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
    run = _rebuilt(token, spec, fresh_since)
    runs: list[Any] = [None] * count
    runs[item.run] = run
    with run.store.active():
        item.call(runs)


@contextmanager
def run_workers(run: Run, count: int) -> Iterator[Callable[[Callable[[Run], Any]], Future]]:
    """``count`` worker processes serving ``run``: yields ``submit(call)``,
    whose future holds ``call(run)`` computed in a worker on one torch thread
    (``call`` picklable, e.g. a ``functools.partial`` of a module-level
    function); the run is rebuilt in each worker once."""
    import multiprocessing
    import uuid
    from concurrent.futures import ProcessPoolExecutor

    from probebench.executors.ray_cluster import RunSpec

    token, spec = uuid.uuid4().hex, RunSpec.of(run)
    pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield lambda call: pool.submit(_call, token, spec, run.store.fresh_since, call)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _call(token: str, spec: RunSpec, fresh_since: int | None, call: Callable[[Run], Any]) -> Any:
    run = _rebuilt(token, spec, fresh_since)
    with run.store.active():
        return call(run)


def _rebuilt(token: str, spec: RunSpec, fresh_since: int | None) -> Run:
    """In a worker: the driver's run (rebuilt once per worker and run), torch on one thread, the console quiet."""
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
    return run
