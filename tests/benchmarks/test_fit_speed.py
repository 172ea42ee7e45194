"""A seed's models (fit tasks) trained beside each other in worker processes
against one after another in this process, in one run, cold (an empty
cache each).

The suite has six models, as the default suite has: the ``cnn`` (1 epoch on
1,000 training digits of mnist-5k), two ensemble members, two cross-fitted
fold models and a small RealNVP. Three ways:

- ``sequential``: one after another here, torch on the thread count the user
  gives (``OMP_NUM_THREADS``, else the number of cores): how the code before
  fit tasks trained them;
- ``sequential_one_thread``: one after another here on one thread each (the
  same bytes as the workers make);
- ``workers``: ``fit_in_workers``, one process per torch thread, one thread each.

Tracked (extra_info): ``ratio_workers_over_sequential`` (target < 1 with two
free cores), ``ratio_workers_over_one_thread`` and each way's wall and CPU
seconds (this process and its children). The wall ratio depends on how many
cores are free: read it with the load average beside it. Nothing here
asserts a time. Run with `pytest tests/benchmarks/test_fit_speed.py --benchmark-only -s`.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from tests.conftest import builtin_modules

SUITE = """
[suite.fit-bench]
dataset = { name = "mnist-5k", limit = 1000 }
classifier = { name = "cnn", epochs = 1 }
scorers = ["msp", "ensemble", { name = "prober", outputs = "none" }]
metrics = ["accuracy", "auroc"]
generators = [{ name = "realnvp", epochs = 1, levels = 1, blocks = 2, hidden = 16 }]
seeds = [0]
"""


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _run(folder: Path, cache: str):
    import torch

    from probebench.cache import ArtifactStore
    from probebench.pipeline.combined import in_run
    from probebench.pipeline.data import load_splits
    from probebench.pipeline.fit import fit_tasks
    from probebench.pipeline.stage import Run
    from probebench.registry import Registry
    from probebench.suite import load_config, parse_suite

    config = load_config(folder / "registry.toml")
    registry = Registry(config.builtin)
    suite = parse_suite(config, "fit-bench", registry)
    store = ArtifactStore(folder / cache)
    with store.active():  # the data cached in the store, as a run caches it: workers read it there
        splits = load_splits(registry, suite.dataset, None, suite.validation)
    run = Run(suite, registry, store, splits, folder / "out")
    # as in a run's (combined) graph: each task is called with the runs and picks its own
    return run, [replace(t, call=partial(in_run, index=0, call=t.call)) for t in fit_tasks(run, 0, torch.device("cpu"))]


def test_fit_tasks_in_workers_against_one_after_another(benchmark, tmp_path):
    import torch

    from probebench.executors.local import torch_threads
    from probebench.executors.workers import fit_in_workers

    modules = ", ".join(f'"{m}"' for m in builtin_modules())
    (tmp_path / "registry.toml").write_text(f"[plugins]\nbuiltin = [{modules}]\n{SUITE}")
    measured: dict[str, float] = {}

    def timed(name: str, work) -> None:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        work()
        measured[f"{name}_s"] = time.perf_counter() - wall
        measured[f"{name}_cpu_s"] = _cpu_seconds() - cpu

    runs = {name: _run(tmp_path, f"cache-{name}") for name in ("sequential", "workers", "sequential_one_thread")}

    def one_after_another(name: str, threads: int | None) -> None:
        run, tasks = runs[name]
        with run.store.active(), torch_threads(threads):
            for task in tasks:
                task.call([run])

    tasks = runs["workers"][1]
    assert len(tasks) == 6 and {t.threads for t in tasks} == {1}
    timed("sequential", lambda: one_after_another("sequential", None))
    benchmark.pedantic(lambda: timed("workers", lambda: fit_in_workers(tasks, [runs["workers"][0]])), rounds=1)
    timed("sequential_one_thread", lambda: one_after_another("sequential_one_thread", 1))
    assert all(task.done(runs["workers"][0]) for task in tasks)  # every model stored
    benchmark.extra_info.update(
        {
            **measured,
            "torch_threads": torch.get_num_threads(),
            "load_average_1min": os.getloadavg()[0],
            "ratio_workers_over_sequential": measured["workers_s"] / measured["sequential_s"],
            "ratio_workers_over_one_thread": measured["workers_s"] / measured["sequential_one_thread_s"],
        }
    )
    print(benchmark.extra_info)
