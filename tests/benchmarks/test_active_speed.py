"""An active-learning run with its lines side by side in two worker processes
against the same run with its lines one after another in one process, in one
run of this file, cold (an empty cache each), torch on one thread per line
either way (the same bytes).

The suite is a small ``mnist-active``: 1,000 digits of mnist-5k (pool 300),
a 2-epoch cnn, a small RealNVP, five lines (``random``, ``margin``,
``badge``, ``boundary-path`` with the ensemble oracle, ``bald``), 2 rounds of
30. Tracked (extra_info): ``ratio_two_workers_over_one`` of the wall times
(target about 0.5 with two free cores; read it with the load average beside
it) and each way's wall and CPU seconds (this process and its children).
Nothing here asserts a time. Run with
`OMP_NUM_THREADS=1 pytest tests/benchmarks/test_active_speed.py --benchmark-only -s`.
"""

from __future__ import annotations

import os
import resource
import time

from tests.conftest import builtin_modules

SUITE = """
[suite.active-bench]
dataset = { name = "mnist-5k", limit = 1000 }
classifier = { name = "cnn", epochs = 2 }
scorers = ["msp"]
metrics = ["accuracy"]
seeds = [0]
bootstrap = { resamples = 100 }
generators = [{ name = "realnvp", epochs = 1, levels = 1, blocks = 2, hidden = 16 }]
active = { rounds = 2, budget = 30, pool = 300, strategies = ["random", "margin", "badge", { name = "boundary-path", max_steps = 20 }, "bald"], oracle = { name = "ensemble-oracle", members = 2 } }
"""


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def test_active_lines_in_two_workers_against_one_after_another(benchmark, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from probebench.cli import app

    modules = ", ".join(f'"{m}"' for m in builtin_modules())
    registry = tmp_path / "registry.toml"
    registry.write_text(f"[plugins]\nbuiltin = [{modules}]\n{SUITE}")
    measured: dict[str, float] = {}

    def run(name: str, workers: int) -> None:
        monkeypatch.setenv("PROBEBENCH_WORKERS", str(workers))
        args = ["run", "active-bench", "--registry", str(registry), "--out", str(tmp_path / name)]
        wall, cpu = time.perf_counter(), _cpu_seconds()
        result = CliRunner().invoke(app, [*args, "--cache-dir", str(tmp_path / f"cache-{name}"), "--device", "cpu"])
        measured[f"{name}_s"] = time.perf_counter() - wall
        measured[f"{name}_cpu_s"] = _cpu_seconds() - cpu
        assert result.exit_code == 0, result.output

    run("one", 1)
    benchmark.pedantic(lambda: run("two", 2), rounds=1)
    same = (tmp_path / "one" / "active.csv").read_bytes() == (tmp_path / "two" / "active.csv").read_bytes()
    assert same  # the same rows either way
    benchmark.extra_info.update(
        {
            **measured,
            "load_average_1min": os.getloadavg()[0],
            "ratio_two_workers_over_one": measured["two_s"] / measured["one_s"],
        }
    )
    print(benchmark.extra_info)
