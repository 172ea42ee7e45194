"""Timing helpers shared by the benchmarks."""

import subprocess
import sys
import time


def best_of(fn, repeat: int = 3) -> float:
    """The fastest of ``repeat`` wall-clock runs of ``fn`` (the least disturbed by a noisy machine)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def stat(benchmark, name: str = "min") -> float:
    """A timing statistic of ``benchmark`` (seconds); NaN under ``--benchmark-disable``,
    which runs each benchmark once as a smoke test and keeps no statistics."""
    stats = getattr(benchmark, "stats", None)
    return float(getattr(stats.stats, name)) if stats is not None else float("nan")


# Runs argv[1:] and prints its exit code and peak RSS (KiB): a fresh, small
# process, so the peak it reads is the command's own
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_pid, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def child_peak_rss(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of ``args`` run in a child process of a
    launcher; asserts it exits with 0."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    code, peak_kib = (int(v) for v in done.stdout.split())
    assert code == 0, done.stderr[-2000:]
    return seconds, peak_kib / 1024  # ru_maxrss is in KiB on Linux
