"""Compare two runs cell by cell: what changed, which changes are outside the
noise, and which are regressions a CI job should fail on.

Each run is first averaged over its seeds (``results.aggregate``). A cell's
interval is the one it shows (``results.shown_interval``): its bootstrap
interval (one seed) or mean ± std over seeds. A change is *flagged* when the
two intervals do not overlap. It is a *regression* when the metric got worse
(by its direction) by more than the tolerance and, with ``require_disjoint``
(the default), is flagged too: a change inside the seed or sampling noise is
never a regression.
Tolerances are in the metric's unit scale and multiplied by the metric's
``scale`` (a 0.01 tolerance is 10 for AURC x1000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from probebench import results
from probebench.errors import UserError

if TYPE_CHECKING:  # pandas stays out of CLI start-up
    import pandas as pd

    from probebench.report.tables import Directions, Scales

CELL_KEYS = ["suite", "dataset", "corruption", "severity", "classifier", "method", "metric"]


@dataclass
class Tolerance:
    default: float = 0.01
    per_metric: dict[str, float] | None = None

    def of(self, metric: str, scale: float) -> float:
        per_metric = self.per_metric or {}
        return per_metric[metric] if metric in per_metric else self.default * scale

    @classmethod
    def parse(cls, items: list[str]) -> Tolerance:
        """``["0.02", "aurc=5"]``: a bare number is the default (unit scale),
        ``metric=value`` an absolute tolerance in that metric's stored units."""
        per_metric: dict[str, float] = {}
        tol = cls(per_metric=per_metric)
        for item in items:
            key, sep, value = item.partition("=")
            try:
                number = float(value if sep else key)
            except ValueError:
                raise UserError(
                    f"--tolerance takes a number or metric=number (e.g. 0.01 or aurc=5), got {item!r}"
                ) from None
            if number < 0:
                raise UserError(f"--tolerance must be >= 0, got {item!r}")
            if sep:
                per_metric[key.strip()] = number
            else:
                tol.default = number
        return tol


def _interval_disjoint(a_low: float | None, a_high: float | None, b_low: float | None, b_high: float | None) -> bool:
    if a_low is None or a_high is None or b_low is None or b_high is None:
        return False
    if any(isinstance(v, float) and math.isnan(v) for v in (a_low, a_high, b_low, b_high)):
        return False
    return a_high < b_low or b_high < a_low


def compare_tables(
    table_a: pd.DataFrame,
    table_b: pd.DataFrame,
    directions: Directions,
    scales: Scales,
    tolerance: Tolerance,
    require_disjoint: bool = True,
) -> tuple[pd.DataFrame, int, int]:
    """A DataFrame with one row per cell in both runs: keys, a_* and b_* columns
    (value, std, seeds, ci_low, ci_high), delta, disjoint, status
    ('regression', 'improved', 'same', 'n/a'); plus the counts only in A / only in B."""
    agg_a = results.aggregate(table_a.drop(columns=["config", "run"], errors="ignore"), CELL_KEYS)
    agg_b = results.aggregate(table_b.drop(columns=["config", "run"], errors="ignore"), CELL_KEYS)
    merged = agg_a.merge(agg_b, on=CELL_KEYS, how="left", suffixes=("_a", "_b"), indicator=True)  # A's order
    only_a = int((merged["_merge"] == "left_only").sum())
    only_b = len(agg_b) - int((merged["_merge"] == "both").sum())
    both = merged[merged["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    if both.empty:
        raise UserError(
            "the two runs share no (suite, dataset, corruption, severity, classifier, method, metric) "
            "cell to compare; are they runs of the same suite?"
        )
    both["delta"] = both["value_b"] - both["value_a"]
    for side in ("a", "b"):  # the interval each side shows: ± std over seeds, else the bootstrap interval
        fields = [both[f"{name}_{side}"] for name in ("value", "std", "seeds", "ci_low", "ci_high")]
        both[f"low_{side}"], both[f"high_{side}"] = results.shown_interval(*fields)
    statuses: list[str] = []
    flags: list[bool] = []
    for _, row in both.iterrows():
        disjoint = _interval_disjoint(row["low_a"], row["high_a"], row["low_b"], row["high_b"])
        flags.append(disjoint)
        higher = directions.get(row["metric"], True)
        delta = row["delta"]
        if delta != delta:
            statuses.append("n/a")
            continue
        worse_by = -delta if higher else delta
        tol = tolerance.of(row["metric"], scales.get(row["metric"], 1))
        if worse_by > tol and (disjoint or not require_disjoint):
            statuses.append("regression")
        elif -worse_by > tol:
            statuses.append("improved")
        else:
            statuses.append("same")
    both["disjoint"] = flags
    both["status"] = statuses
    return both, only_a, only_b
