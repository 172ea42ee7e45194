"""Timing helper shared by the benchmarks."""

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
