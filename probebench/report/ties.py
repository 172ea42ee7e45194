"""Tied-best marks of a leaderboard section, from the bootstrap replicates the intervals were taken over.

A run's ``results.csv`` holds each metric with its percentile interval over
bootstrap resamples of the test samples (``probebench.evaluate``); the run
keeps the metric's value on every one of those resamples in
``replicates.npz``. This module reads those replicates and hands them, paired
resample by resample, to ``probebench.significance.tied_best``: the intervals
and the ties rest on one bootstrap pass, nothing is evaluated again.

Runs written before ``replicates.npz`` existed have their replicates rebuilt
once from ``scores.csv.gz`` on the same resamples (``Resamples.draw`` with the
suite's ``bootstrap`` seed). Only where a column (or row) has neither (e.g.
rows imported without a scores file, or a table drawn without ``Ties``) does
the fallback ``overlap_tied`` decide: a value is tied when its shown interval
overlaps the best value's interval.

A replicate vector is used only when the value it belongs to equals the one in
``results.csv`` to the 6 significant digits it is stored with: a cell whose
number cannot be traced to its replicates (e.g. edited by hand) is never
declared tied, only marked when its value equals the best.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from probebench import significance
from probebench.significance import describe, seed_draws, seed_resampled

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

    from probebench.report.tables import Directions, Section
    from probebench.results import Header

CELL_KEYS = ["run", "suite", "dataset", "corruption", "severity", "classifier", "seed"]
MetricFactory = Callable[[str], Any]  # a metric name -> a metric plugin instance (or None when unknown)
TRACE_RTOL, TRACE_ATOL = 1e-5, 1e-9  # the replicates' own value vs the stored one (6 significant digits)
OVERLAP_RULE = "bold: the best value and every value whose interval overlaps the best's"


def overlap_tied(
    values: npt.ArrayLike,
    lows: npt.ArrayLike,
    highs: npt.ArrayLike,
    higher_is_better: bool,
) -> np.ndarray:
    """The fallback where no per-sample scores are available: a boolean mask
    over ``values`` of the best value (by direction), every value equal to it,
    and every value whose interval ``[low, high]`` overlaps the best value's
    interval. A missing interval (NaN) is the point itself; NaN values are
    never tied."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=bool)
    lows = np.where(np.isfinite(np.asarray(lows, dtype=float)), lows, values)
    highs = np.where(np.isfinite(np.asarray(highs, dtype=float)), highs, values)
    best = int(np.nanargmax(values) if higher_is_better else np.nanargmin(values))
    overlaps = (lows <= highs[best]) & (lows[best] <= highs)
    return finite & (overlaps | np.isclose(values, values[best], rtol=0, atol=1e-12))


def overlap_cells(section: Section, directions: Directions) -> set[tuple[Hashable, Hashable]]:
    """(row, column) positions of ``section`` tied with the best of their line
    by ``overlap_tied`` on the intervals the cells show (no scores needed)."""
    from probebench.report.tables import lines, shown_intervals

    lows, highs = shown_intervals(section)
    marked: set[tuple[Hashable, Hashable]] = set()
    for positions, series, name in lines(section.numbers, directions, section.metric):
        marked |= _overlap_line(positions, series, name, lows, highs, directions)
    return marked


def _overlap_line(
    positions: list[tuple[Hashable, Hashable]],
    series: pd.Series,
    name: str,
    lows: pd.DataFrame,
    highs: pd.DataFrame,
    directions: Directions,
) -> set[tuple[Hashable, Hashable]]:
    low = [lows.loc[pos] for pos in positions]
    high = [highs.loc[pos] for pos in positions]
    tied = overlap_tied(series.to_numpy(dtype=float), low, high, directions[name])
    return {pos for pos, t in zip(positions, tied) if t}


@dataclass
class Replicates:
    """Per-resample values of the rows of a results table: read from each run's
    ``replicates.npz``, or (runs written before it) recomputed lazily from its
    ``scores.csv.gz`` with the run's own resamples."""

    runs: dict[str, Path]  # run name -> folder
    heads: dict[str, Header]
    metric: MetricFactory
    _scores: dict[str, pd.DataFrame | None] = field(default_factory=dict)
    _stored: dict[str, dict[tuple[str, ...], tuple[np.ndarray, float]] | None] = field(default_factory=dict)
    _cache: dict[tuple[Hashable, ...], np.ndarray | None] = field(default_factory=dict)
    untraced: int = 0  # rows whose value differs from the one their replicates belong to

    def resamples(self, run: str) -> int:
        return int((self.heads[run].get("suite") or {}).get("bootstrap", {}).get("resamples", 0) or 0)

    def vectors(self, rows: pd.DataFrame) -> list[np.ndarray | None]:
        """One ``float[B]`` (or None) per row of ``rows`` (results rows with ``run``)."""
        keys = [tuple(r) for r in rows[CELL_KEYS + ["method", "metric"]].itertuples(index=False)]
        missing = [k for k in dict.fromkeys(keys) if k not in self._cache]
        stored = dict(zip(keys, rows["value"].astype(float)))
        by_cell: dict[tuple[Hashable, ...], dict[str, list[str]]] = {}
        for key in missing:
            kept = self._kept(str(key[0]))
            if kept is not None:  # the run's own replicates, drawn with its intervals
                vector, value = kept.get(_text_key(key[1:]), (None, float("nan")))
                self._keep(key, vector, value, stored[key])
            else:
                by_cell.setdefault(key[: len(CELL_KEYS)], {}).setdefault(str(key[-2]), []).append(str(key[-1]))
        for cell, methods in by_cell.items():
            for method, metrics in methods.items():
                found = self._compute(cell, method, metrics)
                for name in metrics:
                    key = (*cell, method, name)
                    vector, value = found.get(name, (None, float("nan")))
                    self._keep(key, vector, value, stored[key])
        return [self._cache[k] for k in keys]

    def _keep(self, key: tuple[Hashable, ...], vector: np.ndarray | None, value: float, stored: float) -> None:
        """Cache ``vector`` for ``key`` when the value it belongs to is the stored one."""
        traced = vector is not None and np.isclose(value, stored, rtol=TRACE_RTOL, atol=TRACE_ATOL, equal_nan=True)
        self.untraced += vector is not None and not traced
        self._cache[key] = vector if traced else None

    def _kept(self, run: str) -> dict[tuple[str, ...], tuple[np.ndarray, float]] | None:
        """The replicates a run kept (by ``_text_key``), None when it kept none."""
        if run not in self._stored:
            from probebench.results import load_replicates

            folder = self.runs.get(run)
            kept = load_replicates(folder) if folder is not None else None
            self._stored[run] = None if kept is None else {_text_key(k): v for k, v in kept.items()}
        return self._stored[run]

    def _frame(self, run: str) -> pd.DataFrame | None:
        if run not in self._scores:
            from probebench.report.html import load_scores

            folder = self.runs.get(run)
            self._scores[run] = load_scores(folder) if folder is not None else None
        return self._scores[run]

    def _compute(
        self, cell: tuple[Hashable, ...], method: str, names: list[str]
    ) -> dict[str, tuple[np.ndarray, float]]:
        """``{metric: (replicates, full-sample value)}`` of one method on one cell."""
        from probebench.evaluate import Resamples, bootstrap_values

        run = str(cell[0])
        scores = self._frame(run)
        resamples = self.resamples(run)
        if scores is None or method not in scores.columns or resamples <= 0:
            return {}
        from probebench.report.html import cell_label

        chosen = scores
        for key, value in zip(CELL_KEYS[1:], cell[1:]):
            column = chosen[key].astype(str)
            if key == "corruption":  # the report shows clean cells by another word
                column, value = column.map(cell_label), cell_label(value)
            chosen = chosen[column == str(value)]
        if chosen.empty:
            return {}
        chosen = chosen.sort_values("index")
        confidence = chosen[method].to_numpy(dtype=float)
        hit = chosen["hit"].to_numpy().astype(bool)
        if not np.isfinite(confidence).all():
            return {}
        metrics = {}
        for name in names:
            metric = self.metric(name)
            if metric is not None and getattr(metric, "needs_confidence", True):
                if not getattr(metric, "needs_probabilities", False):
                    metrics[name] = metric
        seed = int((self.heads[run].get("suite") or {}).get("bootstrap", {}).get("seed", 0) or 0)
        draws = Resamples.draw(len(hit), resamples, seed)
        values = bootstrap_values(metrics, confidence, hit, draws)
        return {name: (values[name], float(metrics[name](confidence, hit))) for name in metrics}


@dataclass
class Ties:
    """How a leaderboard marks tied-best cells: the level and the replicates."""

    alpha: float
    replicates: Replicates
    tested: int = 0  # comparisons with the best tested in the last ``mark``
    fallback: int = 0  # lines of the last ``mark`` decided by ``overlap_tied`` (no scores behind the best)

    def mark(
        self, section: Section, part: pd.DataFrame, rows: list[str], cols: list[str], directions: Directions
    ) -> set[tuple[Hashable, Hashable]]:
        """(row, column) positions of ``section.numbers`` (a pivot of ``part``) to
        bold: by the paired significance test where the line's best value has
        per-sample scores, by ``overlap_tied`` where it has none; with ``alpha``
        0, only the best."""
        from probebench.report.tables import lines, shown_intervals

        combined = self._combined(part, rows, cols) if self.alpha > 0 else {}
        marked: set[tuple[Hashable, Hashable]] = set()
        self.tested = 0
        self.fallback = 0
        intervals: tuple[pd.DataFrame, pd.DataFrame] | None = None
        for positions, series, name in lines(section.numbers, directions, section.metric):
            values = dict(zip(positions, series.to_numpy(dtype=float)))
            found = {pos: combined[pos] for pos in positions if pos in combined}
            anchor = _best_signature(values, found, directions[name])
            if self.alpha > 0 and anchor is None:  # no scores behind the best: the interval-overlap fallback
                intervals = intervals or shown_intervals(section)
                marked |= _overlap_line(positions, series, name, *intervals, directions)
                self.fallback += 1
                continue
            replicates = {pos: vec for pos, (vec, sig) in found.items() if sig == anchor and vec is not None}
            self.tested += max(0, len(replicates) - 1)
            marked |= significance.tied_best(values, replicates, directions[name], self.alpha)
        return marked

    def describe(self, part: pd.DataFrame, keys: list[str]) -> str:
        """The sentence under the section last marked that says how its bold marks were decided."""
        if not self.tested:
            return OVERLAP_RULE if self.fallback else describe(0, [], False)
        untraced = self.replicates.untraced
        runs = part["run"].unique() if "run" in part.columns else []
        counts = [self.replicates.resamples(str(r)) for r in runs if str(r) in self.replicates.heads]
        per_cell = part.groupby(keys, sort=False)["seed"].nunique().max() if keys else part["seed"].nunique()
        sentence = describe(self.alpha, [c for c in counts if c > 0], "seed" not in keys and per_cell > 1)
        if untraced:
            sentence += (
                f"; {untraced} value(s) differ from the value their bootstrap replicates belong to and are bold "
                "only where they equal the best"
            )
        if self.fallback:
            sentence += "; where a line has no per-sample scores: " + OVERLAP_RULE.removeprefix("bold: ")
        return sentence

    def _combined(
        self, part: pd.DataFrame, rows: list[str], cols: list[str]
    ) -> dict[tuple[Hashable, Hashable], tuple[np.ndarray | None, tuple[Any, ...]]]:
        """Per pivot position: the replicates of its shown value (mean within each
        seed, then over resampled seeds) and the signature of the test cells and
        seeds it rests on (only equal signatures are paired)."""
        if "run" not in part.columns:
            return {}
        part = part.assign(_vector=self.replicates.vectors(part))
        out = {}
        keys = rows + cols
        for key, group in part.groupby(keys, sort=False, dropna=False):
            parts = key if isinstance(key, tuple) else (key,)
            row = parts[: len(rows)]
            col = parts[len(rows) :]
            position = (row[0] if len(row) == 1 else row, col[0] if len(col) == 1 else col)
            out[position] = _seed_mean(group)
        return out


def _text_key(key: tuple[Hashable, ...]) -> tuple[str, ...]:
    """A row's (suite, dataset, corruption, severity, classifier, seed, method,
    metric) as text, the clean cell under the report's word for it, whole
    numbers without a decimal point (a table may hold them as floats)."""
    from probebench.report.html import cell_label

    def text(value: Hashable) -> str:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    parts = [text(v) for v in key]
    parts[2] = cell_label(parts[2])
    return tuple(parts)


def _seed_mean(group: pd.DataFrame) -> tuple[np.ndarray | None, tuple[Any, ...]]:
    signature = tuple(sorted(map(tuple, group[CELL_KEYS[1:]].astype(str).itertuples(index=False))))
    vectors = list(group["_vector"])
    if any(v is None for v in vectors) or len({len(v) for v in vectors}) != 1:
        return None, signature
    per_seed = [
        np.mean(np.stack(list(seed_group["_vector"])), axis=0) for _, seed_group in group.groupby("seed", sort=True)
    ]
    stacked = np.stack(per_seed)
    draws = seed_draws(len(per_seed), stacked.shape[1], 0)
    return seed_resampled(stacked, draws), signature


def _best_signature(
    values: dict[Any, float], found: dict[Any, tuple[np.ndarray | None, tuple[Any, ...]]], higher_is_better: bool
) -> tuple[Any, ...] | None:
    """The signature of the best value's position: only positions resting on the
    same test cells and seeds are compared with it (paired)."""
    finite = {pos: v for pos, v in values.items() if np.isfinite(v)}
    if not finite:
        return None
    best = (max if higher_is_better else min)(finite, key=finite.__getitem__)
    return found[best][1] if best in found and found[best][0] is not None else None


def registry_metrics(registry: Any) -> MetricFactory:
    """A ``MetricFactory`` over a plugin registry: None for a metric no plugin provides."""
    from probebench.errors import UserError

    made: dict[str, Any] = {}

    def make(name: str) -> Any:
        if name not in made:
            try:
                made[name] = registry.create("metric", name)
            except UserError:
                made[name] = None
        return made[name]

    return make
