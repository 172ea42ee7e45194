"""CLI start-up: `probebench --help` and `probebench ls` against `python -c pass`.

Tracked ratio: start-up time / bare interpreter time (in extra_info). Run with
`pytest tests/benchmarks --benchmark-only`.
"""

import os
import subprocess
import sys
import time

import pytest

from tests.benchmarks.timing import stat

ENV = {**os.environ, "PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}


def _time(args: list[str], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(args, check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("command", [["--help"], ["ls"]], ids=["help", "ls"])
def test_cli_startup_vs_python(benchmark, command):
    args = [sys.executable, "-m", "probebench", *command]
    bare = _time([sys.executable, "-c", "pass"])
    benchmark.pedantic(
        subprocess.run, args=(args,), kwargs={"check": True, "env": ENV, "capture_output": True}, rounds=5, iterations=1
    )
    seconds = stat(benchmark)
    benchmark.extra_info.update(
        {"ratio_vs_python_c_pass": seconds / bare, "python_c_pass_s": bare, "startup_s": seconds, "target_s": 0.3}
    )
