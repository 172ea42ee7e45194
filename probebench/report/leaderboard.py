"""Leaderboards: filter a (combined) results table and pivot it into sections.

Rules that keep a leaderboard honest:

- Runs whose suites differ in config (``results.config_hash``) are never
  averaged: when several configs survive the filters, ``config`` becomes the
  first row key and the differing suite fields are listed in a note.
- Seeds are averaged last, as mean ± std over seeds; any other key that is
  neither a row, a column nor filtered to one value is averaged within each
  seed first, and a note says so.
- Without a corruption or severity key, filter or pivot, only the clean test
  data is shown (averaging clean and corrupted cells would mix two questions).
- Different metrics are never averaged: with ``metric`` not a key, exactly one
  metric must remain.
- Rows that describe the classifier alone (method ``-``, e.g. accuracy) get
  their own section when ``method`` is a key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probebench import results
from probebench.errors import UserError, suggest
from probebench.evaluate import CLASSIFIER_METHOD
from probebench.report.tables import Scales, Section, metric_label

if TYPE_CHECKING:  # pandas stays out of CLI start-up
    import pandas as pd

    from probebench.report.ties import Ties
    from probebench.results import Header

FILTER_KEYS = results.KEYS + ["config", "run"]


@dataclass
class View:
    rows: list[str]
    cols: list[str]
    metrics: list[str] | None = None
    where: dict[str, list[str]] | None = None


def parse_keys(text: str, option: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    for key in keys:
        if key not in FILTER_KEYS:
            raise UserError(
                f"{option}: cannot pivot on {key!r}{suggest(key, FILTER_KEYS)}; use any of {', '.join(FILTER_KEYS)}"
            )
    return keys


def parse_where(items: list[str]) -> dict[str, list[str]]:
    """``["corruption=none,blur", "seed=0"]`` -> ``{"corruption": ["none", "blur"], "seed": ["0"]}``."""
    where: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise UserError(f"--where takes key=value (e.g. corruption=none or severity=1,2), got {item!r}")
        if key not in FILTER_KEYS:
            raise UserError(
                f"--where: unknown key {key!r}{suggest(key, FILTER_KEYS)}; use any of {', '.join(FILTER_KEYS)}"
            )
        where.setdefault(key, []).extend(v.strip() for v in value.split(",") if v.strip())
    return where


def _matches(column: pd.Series, values: list[str]) -> pd.Series:
    """Rows of ``column`` equal to any of ``values`` (numbers compared as numbers)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        try:
            wanted = [float(v) for v in values]
        except ValueError:
            raise UserError(f"--where {column.name}= takes numbers, got {', '.join(values)}") from None
        return column.astype(float).isin(wanted)
    return column.astype(str).isin(values)


def select(table: pd.DataFrame, view: View, notes: list[str]) -> pd.DataFrame:
    """Apply ``--where``, ``--metric`` and the clean-data default; say what was done in ``notes``."""
    where = dict(view.where or {})
    for key, values in where.items():
        kept = table[_matches(table[key], values)]
        if kept.empty:
            known = sorted(map(str, table[key].unique()))
            raise UserError(
                f"--where {key}={','.join(values)} matches nothing{suggest(values[0], known)}; "
                f"values: {', '.join(known[:20])}"
            )
        table = kept
    if view.metrics:
        unknown = [m for m in view.metrics if m not in set(table["metric"])]
        if unknown:
            known = list(dict.fromkeys(table["metric"]))
            raise UserError(
                f"--metric {unknown[0]!r} is not in these results{suggest(unknown[0], known)}; "
                f"metrics: {', '.join(known)}"
            )
        table = table[table["metric"].isin(view.metrics)]
    keys = set(view.rows) | set(view.cols) | set(where)
    if not keys & {"corruption", "severity"} and (table["corruption"] != results.CLEAN).any():
        if (table["corruption"] == results.CLEAN).any():
            table = table[table["corruption"] == results.CLEAN]
            notes.append("clean test data only (use --cols corruption or --where corruption=NAME for the rest)")
    return table


def _averaged_note(table: pd.DataFrame, shown: set[str]) -> str | None:
    """Which keys were averaged within each shown cell, and over how many values at most."""
    keys = [k for k in shown if k in table.columns]
    averaged = []
    for key in ("dataset", "classifier", "corruption", "severity"):
        if key in keys or table[key].nunique() < 2:
            continue
        most = table.groupby(keys + ["seed"], sort=False)[key].nunique().max() if keys else table[key].nunique()
        if most > 1:
            averaged.append(f"{key} (up to {most} values)")
    return "mean over " + ", ".join(averaged) if averaged else None


def _seed_note(table: pd.DataFrame, shown: list[str], level: float | None, brackets_shown: bool = True) -> str:
    seeds = sorted(table["seed"].unique().tolist())
    if not seeds:
        return ""
    keys = [k for k in shown if k in table.columns and k != "seed"]
    per_group = table.groupby(keys, sort=False)["seed"].nunique() if keys else table["seed"].nunique()
    several = per_group > 1 if keys else [per_group > 1]
    brackets = f"{level:.0%} percentile-bootstrap intervals over test samples" if level else "bootstrap intervals"
    listed = ", ".join(map(str, seeds))
    if all(several):
        return f"mean ± std over seeds {listed}"
    seeds_word = f"seed{'s' if len(seeds) > 1 else ''} {listed}"
    if not any(several):
        return f"{seeds_word}; brackets: {brackets}" if brackets_shown else seeds_word
    if not brackets_shown:
        return "mean ± std over seeds where a row has several"
    return f"mean ± std over seeds where a row has several, brackets: {brackets} where it has one"


def bootstrap_level(heads: dict[str, Header]) -> float | None:
    levels = {(h.get("suite") or {}).get("bootstrap", {}).get("confidence") for h in heads.values()}
    return levels.pop() if len(levels) == 1 else None


def _classifier_keys(rows: list[str], cols: list[str], classifier: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The keys of the classifier section: ``method`` (always '-') becomes ``classifier``."""

    def swap(keys: list[str], other: list[str]) -> list[str]:
        return [
            ("classifier" if k == "method" and "classifier" not in keys + other else k)
            for k in keys
            if k != "method" or "classifier" not in keys + other
        ]

    c_rows, c_cols = swap(rows, cols), swap(cols, rows)
    if not c_rows:
        c_rows = ["classifier"] if "classifier" not in c_cols else ["dataset"]
    if not c_cols:
        c_cols = ["metric"] if "metric" not in c_rows else ["dataset"]
    if "metric" not in c_rows + c_cols and classifier["metric"].nunique() > 1:
        c_cols = c_cols + ["metric"]
    return c_rows, c_cols


def _method_groups(methods: pd.DataFrame) -> dict[str, list[str]]:
    """Methods grouped by the metrics they report, so scorers, correctors and
    generators get tables of their own columns: {group name: methods}."""
    groups: dict[frozenset[str], list[str]] = {}
    for method, names in methods.groupby("method", sort=False)["metric"]:
        groups.setdefault(frozenset(names), []).append(method)
    if len(groups) == 1:
        return {"": next(iter(groups.values()))}
    kinds = ["miss detection", "correction", "generators"]
    named: dict[str, list[str]] = {}
    for metrics, members in groups.items():
        name = "correction" if "correction-rate" in metrics else "generators" if "bits-per-dim" in metrics else kinds[0]
        named[name if name not in named else f"{name} ({len(named)})"] = members
    return dict(sorted(named.items(), key=lambda item: kinds.index(item[0]) if item[0] in kinds else len(kinds)))


def _titled(title: str, group: str) -> str:
    return f"{title}: {group}" if title and group else title or group


def sections(
    table: pd.DataFrame, view: View, heads: dict[str, Header], title: str = "", ties: Ties | None = None
) -> list[Section]:
    """The sections a leaderboard shows for ``view`` of the combined ``table``;
    with ``ties``, each bolds every value not significantly worse than the best
    and says so under the table (else only the best)."""
    notes: list[str] = []
    table = select(table, view, notes)
    rows, cols = list(view.rows), list(view.cols)
    if "config" in table.columns and table["config"].nunique() > 1 and "config" not in rows + cols:
        rows = ["config"] + rows
        differences = results.config_differences(heads, table["config"].unique())
        notes.append(
            "runs with different suite configs are shown apart (config = hash of the suite); "
            + ("they differ in " + "; ".join(differences) if differences else "see run.json")
        )
    out: list[Section] = []
    keyed = set(rows) | set(cols)
    if "method" in keyed:
        classifier = table[table["method"] == CLASSIFIER_METHOD]
        methods = table[table["method"] != CLASSIFIER_METHOD]
        parts = [
            (_titled(title, group), methods[methods["method"].isin(names)], rows, cols)
            for group, names in _method_groups(methods).items()
        ]
        if len(classifier):
            c_rows, c_cols = _classifier_keys(rows, cols, classifier)
            parts.append(((title + ": " if title else "") + "classifier", classifier, c_rows, c_cols))
    else:
        parts = [(title, table, rows, cols)]
    for part_title, part, p_rows, p_cols in parts:
        if part.empty:
            continue
        section = Section.of(part_title, results.pivot_fields(part, p_rows, p_cols))
        section.metric = None if "metric" in p_rows + p_cols else str(part["metric"].iloc[0])
        shown = set(p_rows) | set(p_cols) | set(view.where or {})
        seed_note = _seed_note(part, p_rows + p_cols, bootstrap_level(heads), section.has_brackets())
        words = [seed_note, _averaged_note(part, shown)] + (notes if not out else [])
        if ties is not None:
            section.marked = ties.mark(section, part, p_rows, p_cols, results.directions(list(heads.values())))
            words.append(ties.describe(part, p_rows + p_cols))
        section.caption = "; ".join(w for w in words if w)
        out.append(section)
    if not out:
        raise UserError("no rows to show with these filters")
    return out


def provenance(heads: dict[str, Header], table: pd.DataFrame) -> list[dict[str, Any]]:
    """One line of provenance per run that contributed rows."""
    used = set(table["run"]) if "run" in table.columns else set(heads)
    lines = []
    for name, head in heads.items():
        if name not in used:
            continue
        part = table[table["run"] == name] if "run" in table.columns else table
        lines.append(
            {
                "run": name,
                "suite": head.get("suite", {}).get("name", "?"),
                "config": results.run_config(head),
                "seeds": sorted(part["seed"].unique().tolist()),
                "commit": (head.get("git_commit") or "unknown")[:10],
                "probebench": head.get("probebench_version", "?"),
                "torch": head.get("torch_version", "?"),
                "started": head.get("started", "?"),
                "machine": (head.get("machine") or {}).get("platform", "?"),
            }
        )
    return lines


def scaled_note(scales: Scales, metrics: Iterable[str]) -> str | None:
    scaled = [metric_label(m, scales) for m in dict.fromkeys(metrics) if scales.get(m, 1) != 1]
    return ("shown as stored: " + ", ".join(scaled)) if scaled else None
