"""The tables of a run or suite, grouped by FD-Shifts' shift studies.

``iid`` is the clean test split, ``corruption`` every corrupted cell, and
``new-class`` the cell of a suite with ``new_classes`` (the clean test images
plus the held-out classes' images, which are always misses). Each study gets
tables of its own: its cells are never averaged with another study's. The
new-class study has two: every failure (misclassified seen-class images and
unseen-class images) and ``new-class-auroc``, which asks only whether a scorer
ranks unseen-class images below hits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probebench.pipeline.cells import NEW_CLASS, study
from probebench.pipeline.evaluate import NEW_CLASS_AUROC
from probebench.report.leaderboard import View

if TYPE_CHECKING:
    import pandas as pd


def study_views(table: pd.DataFrame, clean: str) -> list[tuple[str, View]]:
    """(title, view) of every table ``table`` (tidy results rows) has data for,
    study by study; ``clean`` is how the table names the clean test split in
    its corruption column (reports relabel it)."""
    cells = list(dict.fromkeys(table["corruption"].astype(str)))
    of_study = {name: study(name if name != clean else "none") for name in cells}
    corrupted = [c for c in cells if of_study[c] == "corruption"]
    metrics = list(dict.fromkeys(table["metric"]))
    detection = [m for m in metrics if m != NEW_CLASS_AUROC]
    iid = {"corruption": [clean]} if clean in cells else None  # a suite with clean = false has no iid cell
    views = [("iid study: Clean test data", View(["method"], ["metric"], detection, iid))]
    if corrupted and "auroc" in metrics:
        with_clean = {"corruption": [clean, *corrupted] if clean in cells else corrupted}
        views += [
            (
                "corruption study: AUROC by corruption (mean over severities)",
                View(["method"], ["corruption"], ["auroc"], with_clean),
            ),
            (
                "corruption study: AUROC by severity (0 = clean; mean over corruptions)",
                View(["method"], ["severity"], ["auroc"], with_clean),
            ),
        ]
    if NEW_CLASS in cells:
        where = {"corruption": [NEW_CLASS]}
        views.append(
            ("new-class study: clean test data and unseen-class images", View(["method"], ["metric"], detection, where))
        )
        if NEW_CLASS_AUROC in metrics:
            views.append(
                (
                    "new-class study: hits against unseen-class images (new-class-auroc)",
                    View(["method"], ["metric"], [NEW_CLASS_AUROC], where),
                )
            )
    return views
