"""Whole runs of the default suite (``mnist-quick``) and of ``mnist-cure``
(36 corruption cells), cold (an empty artifact cache of their own), each in a
child process whose peak resident set size the kernel reports (``wait4``).
The child is started by a small launcher process, not by pytest itself:
Linux carries a process's peak across ``exec``, so a child forked straight
from pytest would report pytest's own peak (1.3 GiB after the other
benchmarks) whenever its real one is smaller (``tests/test_peak_rss.py``).

Tracked (extra_info, listed by summary.py): ``peak_rss_mib`` of each cold run;
for the default suite also a warm run (everything cached) and
``ratio_warm_over_cold``. Wall-clock targets (cold <= 60 s, warm <= 3 s on an
idle 2-core machine) are read from ``cold_run_s`` / ``warm_run_s``, never
asserted. Run with `pytest tests/benchmarks --benchmark-only`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.benchmarks.timing import child_peak_rss


def run_suite(suite: str, cache: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of ``probebench run SUITE`` in a child process."""
    args = [sys.executable, "-m", "probebench", "run", suite, "--cache-dir", str(cache), "--out", str(out)]
    return child_peak_rss(args, {**os.environ, "PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"})


@pytest.mark.parametrize("suite", ["mnist-quick", "mnist-cure"])
def test_cold_run_peak_memory(benchmark, tmp_path, suite):
    measured = {}

    def cold():
        measured["cold"] = run_suite(suite, tmp_path / "cache", tmp_path / "cold")

    benchmark.pedantic(cold, rounds=1, iterations=1)
    seconds, peak = measured["cold"]
    info = {"suite": suite, "cold_run_s": seconds, "peak_rss_mib": peak}
    if suite == "mnist-quick":
        warm_s, warm_peak = run_suite(suite, tmp_path / "cache", tmp_path / "warm")
        info.update({"warm_run_s": warm_s, "warm_peak_rss_mib": warm_peak, "ratio_warm_over_cold": warm_s / seconds})
    benchmark.extra_info.update(info)
    assert (tmp_path / "cold" / "results.csv").exists()
