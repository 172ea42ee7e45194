"""What a person reads of the correction stage across seeds: the label-free
loop's net accuracy gain pooled over seeds, with one interval from a
bootstrap over seeds and test images together (``probebench.evaluate.
pooled_over_seeds``, the same as the active-learning gains). The per-seed
rows of ``results.csv`` carry intervals over test images only; this table
answers "does the gain exclude zero?" over everything a reader would
re-draw. Built from the per-sample gains each run saves in
``corrections/*.pt`` (``loop_gain``, ``tuned_loop_gain``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FOLDER = "corrections"  # probebench.pipeline.correct writes one .pt per (method, seed, cell)
GAINS = {"loop_gain": "net-accuracy-gain", "tuned_loop_gain": "tuned-net-accuracy-gain"}
TAG = re.compile(r"^seed(?P<seed>\d+)_(?P<corruption>.+)-(?P<severity>\d+)$")  # probebench.pipeline.cells.Cell.tag


def load_gains(runs: list[Path]) -> pd.DataFrame | None:
    """One row per (method, seed, corruption, severity, metric) with the
    per-sample gains (``values``) of every run's corrections that saved them;
    None when none did. A seed in several runs is kept from the last."""
    import pandas as pd
    import torch

    rows = []
    for run in runs:
        for path in sorted((run / FOLDER).glob("*.pt")):
            record = torch.load(path, weights_only=True)
            cell = TAG.match(str(record.get("cell", "")))
            if "method" not in record or cell is None:
                continue  # saved before the gains were: nothing to pool
            for key, metric in GAINS.items():
                if key in record:
                    rows.append(
                        {
                            "method": record["method"],
                            "seed": int(cell["seed"]),
                            "corruption": cell["corruption"],
                            "severity": int(cell["severity"]),
                            "metric": metric,
                            "values": record[key].double().numpy(),
                        }
                    )
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    keys = ["method", "seed", "corruption", "severity", "metric"]
    return frame.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)


def pooled(gains: pd.DataFrame, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per (method, corruption, severity, metric) present on every seed: the
    mean over seeds with its pooled interval (``pooled_over_seeds``: the same
    draws for every method, so the methods stay paired), and ``std`` over seeds."""
    import pandas as pd

    from probebench.evaluate import pooled_over_seeds

    seeds = sorted(gains["seed"].unique().tolist())
    rows = []
    for (method, corruption, severity, metric), group in gains.groupby(
        ["method", "corruption", "severity", "metric"], sort=False
    ):
        if sorted(group["seed"]) != seeds:
            continue  # a method some seed lacks is not pooled
        per_seed = list(group.sort_values("seed")["values"])
        rows.append(
            {
                "method": method,
                "corruption": corruption,
                "severity": severity,
                "metric": metric,
                **pooled_over_seeds(per_seed, resamples, level, seed),
            }
        )
    return pd.DataFrame(rows)


def _cell(corruption: str, severity: int) -> str:
    return "clean" if corruption == "none" else f"{corruption} {severity}"


def markdown(gains: pd.DataFrame, order: list[str] | None = None) -> str:
    """The pooled gains as one markdown table: a row per method (those in
    ``order`` first, in that order), a column per (metric, cell); an interval
    that excludes zero is marked. "" with fewer than two seeds."""

    table = pooled(gains)
    if table.empty or gains["seed"].nunique() < 2:
        return ""
    digits = 3  # gains are shares of the test images
    table["column"] = [
        f"{'tuned gain' if m.startswith('tuned') else 'net gain'}, {_cell(c, s)}"
        for m, c, s in zip(table["metric"], table["corruption"], table["severity"], strict=True)
    ]
    table["text"] = [
        f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]" + (" ✱" if lo > 0 or hi < 0 else "")
        for v, lo, hi in zip(table["value"], table["ci_low"], table["ci_high"], strict=True)
    ]
    columns = table.sort_values(["metric", "severity"], ascending=[False, True])["column"].drop_duplicates()
    found = table["method"].drop_duplicates().tolist()
    rows = [m for m in order or [] if m in found] + [m for m in found if m not in (order or [])]
    wide = table.pivot(index="method", columns="column", values="text").reindex(index=rows, columns=columns)
    seeds = ", ".join(map(str, sorted(gains["seed"].unique())))
    lines = [
        "### Net accuracy gain of the label-free loop, pooled over seeds",
        "",
        f"Mean over seeds {seeds}; brackets: 95% percentile interval of a bootstrap over seeds and test "
        "images together (each replicate draws the seeds with replacement and resamples each drawn seed's "
        "test images; the same draws for every method); ✱: the interval excludes zero. From the per-sample "
        "gains in each run's `corrections/*.pt`.",
        "",
        "| method | " + " | ".join(wide.columns) + " |",
        "|---|" + "---:|" * len(wide.columns),
    ]
    for method, row in wide.iterrows():
        lines.append(f"| `{method}` | " + " | ".join(str(v) if v == v else "" for v in row) + " |")
    return "\n".join(lines) + "\n"
