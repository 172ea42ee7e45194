"""``--executor ray`` against ``--executor local`` on this machine, in one run.

A 2-seed suite with six corruption cells, cold (empty caches): local with
torch on 2 threads, Ray with 2 CPUs (one task per CPU, one torch thread per
task). Then both again warm (everything cached): what is left is each
executor's own cost, and (ray - local) / tasks is Ray's overhead per task.

Tracked (extra_info): ``ratio_ray_over_local`` (cold wall time; target <= 1),
``overhead_ms_per_task`` (warm), and the task count.

Run with `pytest tests/benchmarks/test_ray_speed.py --benchmark-only -s`.
Nothing here asserts a time.
"""

from __future__ import annotations

import time
from pathlib import Path

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


def test_ray_against_local_on_two_cpus(benchmark, folder):
    import ray
    import torch

    from probebench.cache import ArtifactStore
    from probebench.pipeline.data import load_splits
    from probebench.pipeline.graph import build_graph
    from probebench.pipeline.stage import Run
    from probebench.registry import Registry
    from probebench.suite import load_config, parse_suite

    torch.set_num_threads(2)
    local_cold = _run(folder, "local", "local-cold", "cache-local")
    local_warm = _run(folder, "local", "local-warm", "cache-local")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        _run(folder, "ray", "ray-warmup", "cache-warmup")  # workers start and import torch once
        ray_cold = _run(folder, "ray", "ray-cold", "cache-ray")
        benchmark.pedantic(_run, args=(folder, "ray", "ray-warm", "cache-ray"), rounds=1, iterations=1)
        ray_warm = benchmark.stats.stats.median
    finally:
        ray.shutdown()
    config = load_config(folder / "registry.toml")
    registry = Registry(config.builtin)
    suite = parse_suite(config, "ray-bench", registry)
    splits = load_splits(registry, suite.dataset, None, suite.validation)
    tasks = len(
        build_graph(Run(suite, registry, ArtifactStore(folder / "cache-local"), splits, folder), torch.device("cpu"))
    )
    benchmark.extra_info.update(
        {
            "tasks": tasks,
            "local_cold_s": local_cold,
            "ray_cold_s": ray_cold,
            "ratio_ray_over_local": ray_cold / local_cold,
            "local_warm_s": local_warm,
            "ray_warm_s": ray_warm,
            "overhead_ms_per_task": 1000 * (ray_warm - local_warm) / tasks,
        }
    )
    print(benchmark.extra_info)
