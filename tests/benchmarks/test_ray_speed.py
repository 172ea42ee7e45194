"""``--executor ray`` against ``--executor local`` on this machine, in one run.

A 2-seed suite with six corruption cells, cold (empty caches): local with
torch on 2 threads, Ray with 2 CPUs (one task per CPU, one torch thread per
task). Then both again warm (everything cached): what is left is each
executor's own cost, and (ray - local) / tasks is Ray's overhead per task.

Tracked (extra_info): ``ratio_ray_over_local`` (cold wall time; target <= 1),
``overhead_ms_per_task`` (warm), the task count, and per stage of the cold
local run: tasks, seconds per task, and the bytes a task's public output
(what travels back to the driver) and its cached artifacts take, the
measured costs a cluster estimate is drawn from (docs/cluster.md).

Run with `OMP_NUM_THREADS=1 pytest tests/benchmarks/test_ray_speed.py --benchmark-only -s`.
Nothing here asserts a time.
"""

from __future__ import annotations

import pickle
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from probebench.cli import app
from tests.conftest import builtin_modules

SUITE = """
[suite.ray-bench]
dataset = { name = "mnist-5k" }
classifier = { name = "cnn", epochs = 1 }
scorers = ["msp", "entropy", "mc-dropout:mi", "grad-norm"]
metrics = ["accuracy", "auroc", "aupr-miss", "fpr95", "aurc"]
corruptions = [{ name = "cure-noise", severities = [1, 3, 5] }, { name = "cure-gaussian-blur", severities = [1, 3, 5] }]
seeds = [0, 1]
bootstrap = { resamples = 200 }
"""


def _run(root: Path, executor: str, name: str, cache: str) -> float:
    from typer.testing import CliRunner

    args = ["run", "ray-bench", "--registry", str(root / "registry.toml"), "--out", str(root / name)]
    args += ["--cache-dir", str(root / cache), "--device", "cpu", "--executor", executor]
    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return time.perf_counter() - started


@pytest.fixture
def folder(tmp_path):
    modules = ", ".join(f'"{m}"' for m in builtin_modules())
    (tmp_path / "registry.toml").write_text(f"[plugins]\nbuiltin = [{modules}]\n{SUITE}")
    return tmp_path


def _timing(costs: dict[str, list[tuple[float, int]]]) -> Any:
    """A LocalExecutor.execute that records each task's (seconds, pickled public bytes) by stage."""
    from probebench.executors.local import LocalExecutor
    from probebench.pipeline.graph import Graph

    original = LocalExecutor.execute

    def timed(task: Any) -> Any:
        def call(run: Any, *inputs: Any) -> Any:
            started = time.perf_counter()
            output = task.call(run, *inputs)
            public = None if task.public is None else task.public(output)
            costs[task.stage].append((time.perf_counter() - started, len(pickle.dumps(public))))
            return output

        return call

    def execute(self: Any, graph: Any, run: Any) -> Any:
        wrapped = Graph(tuple(t if t.id == graph.target else replace(t, call=timed(t)) for t in graph), graph.target)
        return original(self, wrapped, run)

    return execute


def test_ray_against_local_on_two_cpus(benchmark, folder, monkeypatch):
    import ray
    import torch

    from probebench.executors.local import LocalExecutor

    costs: dict[str, list[tuple[float, int]]] = defaultdict(list)
    torch.set_num_threads(2)  # local: torch on both cores
    with monkeypatch.context() as patch:
        patch.setattr(LocalExecutor, "execute", _timing(costs))
        local_cold = _run(folder, "local", "local-cold", "cache-local")
    local_warm = _run(folder, "local", "local-warm", "cache-local")
    torch.set_num_threads(1)  # Ray: one torch thread per task, a task per CPU
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        _run(folder, "ray", "ray-warmup", "cache-warmup")  # workers start and import torch once
        ray_cold = _run(folder, "ray", "ray-cold", "cache-ray")
        benchmark.pedantic(_run, args=(folder, "ray", "ray-warm", "cache-ray"), rounds=1, iterations=1)
        ray_warm = benchmark.stats.stats.median
    finally:
        ray.shutdown()
    tasks = sum(len(v) for v in costs.values()) + 1  # and the collector
    artifacts = {
        stage.name: (len(files), sum(f.stat().st_size for f in files))
        for stage in (folder / "cache-local").iterdir()
        if stage.is_dir() and (files := list(stage.glob("*.pt")))
    }
    benchmark.extra_info.update(
        {
            "tasks": tasks,
            "local_cold_s": local_cold,
            "ray_cold_s": ray_cold,
            "ratio_ray_over_local": ray_cold / local_cold,
            "local_warm_s": local_warm,
            "ray_warm_s": ray_warm,
            "overhead_ms_per_task": 1000 * (ray_warm - local_warm) / tasks,
            "per_stage": {
                stage: {
                    "tasks": len(v),
                    "seconds_per_task": sum(s for s, _ in v) / len(v),
                    "public_bytes_per_task": sum(b for _, b in v) / len(v),
                }
                for stage, v in costs.items()
            },
            "artifacts": {stage: {"files": n, "bytes": size} for stage, (n, size) in artifacts.items()},
        }
    )
    print(benchmark.extra_info)
