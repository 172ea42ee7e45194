"""Apply metric plugins to one cell's per-sample confidences, with percentile
bootstrap intervals over test samples: the statistics of the evaluate stage
(``probebench/pipeline/evaluate.py``).

The resamples of a cell are drawn once (seeded by the suite's ``bootstrap``
table) and shared by every method and metric, so intervals of two methods are
paired. A resample is held as per-sample counts [B, N]; for each method the
samples are sorted by confidence once and every resample is laid out in that
order by repeating indices (no sort per resample). Metrics get [B, N] batches
already sorted by confidence, which the built-in metrics detect and skip
their own sort on: 1,000 resamples of 10,000 samples take about a second per
metric on a laptop core. Batches are processed in chunks to bound memory.

Every metric must therefore be a symmetric function of the samples (any
statistic of an i.i.d. test set is).

The per-resample values behind each interval are kept (``Estimate.replicates``,
the ``replicates`` entry of a row): the run writes them to ``replicates.npz``
and the tied-best test of a leaderboard differences them pair by pair
(``probebench.significance``), so the intervals and the ties rest on one
bootstrap pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from probebench.suite import Bootstrap

CLASSIFIER_METHOD = "-"  # the method column of rows that describe the classifier alone
CHUNK_ELEMENTS = 2_000_000  # resample elements per metric call: ~16 MB per float array
REPLICATES = "replicates"  # the row entry holding an estimate's per-resample values (not a results.csv column)


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    n: int
    replicates: np.ndarray | None = field(default=None, repr=False, compare=False)  # float[B] behind the interval

    def row(self) -> dict[str, Any]:
        """``{value, ci_low, ci_high, n, replicates}``: the entries of a tidy row."""
        return {
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n": self.n,
            REPLICATES: self.replicates,
        }


def without_replicates(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` without its ``replicates`` entry (for tables that keep none, e.g. active.csv)."""
    return {key: value for key, value in row.items() if key != REPLICATES}


def bootstrap_bytes(n: int, resamples: int, metrics: int) -> int:
    """Peak memory of one cell's bootstrap: drawing resamples of ``n`` samples
    as counts holds int64 indices, their offsets and bincount (24 bytes per
    resampled sample, measured with tracemalloc), the sorted batches hold up
    to ``CHUNK_ELEMENTS`` resampled values, and each metric a float per resample."""
    return 24 * resamples * n + 20 * CHUNK_ELEMENTS + 8 * resamples * metrics


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_bootstrap_memory(bootstrap: Bootstrap, n: int, metrics: int, available: int | None = None) -> None:
    """Refuse, before any training, a bootstrap that needs more than half the
    available memory (``resamples`` x test samples is the product that grows)."""
    from probebench.errors import UserError

    need = bootstrap_bytes(n, bootstrap.resamples, metrics)
    available = available_memory() if available is None else available
    if available is not None and need > available // 2:
        raise UserError(
            f"bootstrap resamples = {bootstrap.resamples} over {n} test samples needs about {need / 2**30:.1f} GiB, "
            f"more than half the {available / 2**30:.1f} GiB of memory available; lower the suite's "
            f"bootstrap resamples (1000 is usual)"
        )


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """Indices [resamples, n] of resamples drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


@dataclass(frozen=True)
class Resamples:
    """Bootstrap resamples of ``n`` samples as counts [B, n]: how often each
    sample occurs in each resample."""

    counts: np.ndarray

    @classmethod
    def from_indices(cls, indices: np.ndarray, n: int) -> Resamples:
        indices = np.asarray(indices)
        rows = len(indices)
        if rows == 0:
            return cls(np.zeros((0, n), dtype=np.int64))
        offsets = (np.arange(rows) * n)[:, None]
        counts = np.bincount((indices + offsets).ravel(), minlength=rows * n).astype(np.int32).reshape(rows, n)
        return cls(counts)

    @classmethod
    def draw(cls, n: int, resamples: int, seed: int) -> Resamples:
        return cls.from_indices(bootstrap_indices(n, resamples, seed), n)

    def __len__(self) -> int:
        return len(self.counts)

    def sorted_batches(self, confidence: np.ndarray, hit: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (confidence, hit) [b, n] of consecutive resamples, each row
        sorted ascending by confidence."""
        n = len(confidence)
        order = np.argsort(confidence, kind="stable")
        conf_sorted, hit_sorted = confidence[order], hit[order]
        counts = self.counts[:, order]
        rows = max(1, CHUNK_ELEMENTS // max(n, 1))
        for lo in range(0, len(counts), rows):
            part = counts[lo : lo + rows]
            positions = np.repeat(np.tile(np.arange(n), len(part)), part.ravel()).reshape(len(part), n)
            yield conf_sorted[positions], hit_sorted[positions]


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite ``samples``."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]  # a resample with no miss has no AUROC
    if len(samples) == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return float(low), float(high)


def pooled_over_seeds(
    per_seed: Sequence[np.ndarray], resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """A per-sample mean measured on several seeds, pooled: ``value`` the mean
    over seeds of each seed's mean, ``std`` over seeds, and ``ci_low`` /
    ``ci_high`` a percentile interval from a bootstrap over seeds and samples
    together (each replicate draws the seeds with replacement and, for each,
    its own resample of that seed's samples). The draws depend only on the
    seeds' sample counts and ``seed``, so every quantity measured on the same
    samples (each method of a table) is resampled alike and stays paired."""
    from probebench.significance import seed_draws, seed_resampled

    parts = [np.asarray(values, dtype=float) for values in per_seed]
    means = np.array([part.mean() for part in parts])
    replicates = np.stack(
        [Resamples.draw(len(part), resamples, seed + i).counts @ part / len(part) for i, part in enumerate(parts)]
    )
    low, high = percentile_interval(seed_resampled(replicates, seed_draws(len(parts), resamples, seed)), level)
    return {
        "value": float(means.mean()),
        "ci_low": low,
        "ci_high": high,
        "std": float(means.std(ddof=1)) if len(means) > 1 else float("nan"),
        "seeds": len(means),
        "cells": 1,
    }


def bootstrap_values(metrics: dict, confidence: np.ndarray, hit: np.ndarray, resamples: Resamples) -> dict:
    """Each metric on every resample: ``{name: float[B]}``.

    The batches are handed to every metric in turn and are read-only, so a
    metric may safely memoise work on the same batch (the built-ins share one
    ranking of it).
    """
    parts: dict[str, list[np.ndarray]] = {name: [] for name in metrics}
    for conf, hits in resamples.sorted_batches(confidence, hit):
        conf.flags.writeable = False
        hits.flags.writeable = False
        for name, metric in metrics.items():
            parts[name].append(np.atleast_1d(np.asarray(metric(conf, hits), dtype=float)))
    return {name: np.concatenate(p) if p else np.zeros(0) for name, p in parts.items()}


def estimates(
    metrics: dict, confidence: np.ndarray, hit: np.ndarray, resamples: Resamples | np.ndarray, level: float
) -> dict:
    """``{name: Estimate}``: each metric on the full sample, with its percentile
    interval over ``resamples`` (a ``Resamples`` or an index array [B, N])."""
    confidence = np.asarray(confidence, dtype=float)
    hit = np.asarray(hit, dtype=bool)
    if not isinstance(resamples, Resamples):
        resamples = Resamples.from_indices(resamples, len(hit))
    values = {name: float(metric(confidence, hit)) for name, metric in metrics.items()}
    to_resample = {name: m for name, m in metrics.items() if np.isfinite(values[name])}
    samples = bootstrap_values(to_resample, confidence, hit, resamples) if len(resamples) and to_resample else {}
    out = {}
    for name, value in values.items():
        low, high = percentile_interval(samples[name], level) if name in samples else (float("nan"),) * 2
        out[name] = Estimate(value, low, high, len(hit), samples.get(name))
    return out


def estimate(
    metric: Callable[..., Any], confidence: np.ndarray, hit: np.ndarray, resamples: Resamples | np.ndarray, level: float
) -> Estimate:
    """One metric's ``Estimate`` (see ``estimates``)."""
    return estimates({"metric": metric}, confidence, hit, resamples, level)["metric"]


def mean_estimate(per_sample: np.ndarray, resamples: Resamples, level: float) -> Estimate:
    """The mean of per-sample values with its percentile interval over the
    resamples (a weighted mean by their counts: one matrix product)."""
    per_sample = np.asarray(per_sample, dtype=float)
    n = len(per_sample)
    value = float(per_sample.mean()) if n else float("nan")
    if not (len(resamples) and np.isfinite(value)):
        return Estimate(value, float("nan"), float("nan"), n)
    replicates = resamples.counts @ per_sample / n
    return Estimate(value, *percentile_interval(replicates, level), n, replicates)


def evaluate_cell(
    confidences: dict[str, np.ndarray],
    hit: np.ndarray,
    metrics: dict[str, Any],
    bootstrap: Bootstrap,
    per_sample: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """Rows ``{method, metric, value, ci_low, ci_high, n, replicates}`` for one
    cell (``replicates``: the metric on each resample, float[B], or None
    where the value has no interval).

    Metrics with ``needs_confidence = False`` (accuracy) describe the classifier
    and appear once, with method ``-``; so do metrics with
    ``needs_probabilities = True`` (NLL, Brier), the mean of their per-sample
    values given in ``per_sample`` by metric name (NaN when absent). Non-finite
    confidences never enter a metric: the caller records such a method as
    failed instead.
    """
    hit = np.asarray(hit, dtype=bool)
    resamples = Resamples.draw(len(hit), bootstrap.resamples, bootstrap.seed)
    of_probabilities = {k: m for k, m in metrics.items() if getattr(m, "needs_probabilities", False)}
    of_classifier = {
        k: m for k, m in metrics.items() if not getattr(m, "needs_confidence", True) and k not in of_probabilities
    }
    of_method = {k: m for k, m in metrics.items() if k not in of_classifier and k not in of_probabilities}
    found = {}
    if of_classifier:
        for name, est in estimates(of_classifier, np.zeros(len(hit)), hit, resamples, bootstrap.confidence).items():
            found[(CLASSIFIER_METHOD, name)] = est
    for name in of_probabilities:
        values = (per_sample or {}).get(name, np.full(len(hit), np.nan))
        found[(CLASSIFIER_METHOD, name)] = mean_estimate(values, resamples, bootstrap.confidence)
    for method, confidence in confidences.items():
        if not of_method:
            break
        for name, est in estimates(of_method, confidence, hit, resamples, bootstrap.confidence).items():
            found[(method, name)] = est
    rows = []
    for name in metrics:  # rows in the suite's metric order, as before
        methods = [CLASSIFIER_METHOD] if name in of_classifier or name in of_probabilities else list(confidences)
        rows += [{"method": m, "metric": name, **found[(m, name)].row()} for m in methods]
    return rows
