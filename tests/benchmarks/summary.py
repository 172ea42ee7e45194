"""Print the ratios the benchmarks track, from a pytest-benchmark JSON file.

    pytest tests/benchmarks --benchmark-only --benchmark-json=bench.json
    python tests/benchmarks/summary.py bench.json

Each benchmark states the ratios it tracks in ``extra_info`` (keys with
``ratio`` or ``_over_`` in their name) and any peak memory (``peak_rss`` keys,
MiB); this lists them with the median time.
"""

from __future__ import annotations

import json
import sys


def ratios(extra: dict) -> dict[str, float]:
    tracked = ("ratio", "_over_", "peak_rss")
    return {k: v for k, v in extra.items() if any(t in k for t in tracked) and isinstance(v, (int, float))}


def summary(report: dict) -> list[str]:
    lines = []
    for bench in report["benchmarks"]:
        tracked = ", ".join(f"{k} {v:.3g}" for k, v in ratios(bench.get("extra_info", {})).items())
        lines.append(f"{bench['fullname'].split('::', 1)[-1]:<75} {bench['stats']['median']:9.4f} s  {tracked}")
    return lines


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/benchmarks/summary.py BENCHMARK.json")
    with open(sys.argv[1]) as handle:
        print("\n".join(summary(json.load(handle))))
