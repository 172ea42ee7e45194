"""matplotlib figures of a run, drawn from its per-sample scores and results.

Each function returns a Figure (Agg backend, nothing shown). Several seeds
are drawn as thin lines of the method's colour, one legend entry per method
with the metric's mean over seeds. ``png(fig)`` encodes a figure for inlining.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from probebench.report import curves

if TYPE_CHECKING:  # matplotlib and pandas are imported when a figure is drawn
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Curve = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

FIGSIZE = (6.4, 4.4)


def _plt() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)  # layout="constrained": no second draw for a tight bbox
    _plt().close(fig)
    return buffer.getvalue()


def _colours(methods: Sequence[str]) -> dict[str, Any]:
    cmap = _plt().get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def _by_seed(cell: pd.DataFrame, method: str) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    for seed, part in cell.groupby("seed", sort=True):
        conf = part[method].to_numpy(dtype=float)
        hit = part["hit"].to_numpy() == 1
        if np.isfinite(conf).all():
            yield seed, conf, hit


def _seed_curves(
    ax: Axes, cell: pd.DataFrame, methods: Sequence[str], curve: Curve, label: Callable[[str], str]
) -> None:
    """One line per method and seed, ``curve(conf, hit)`` giving its x and y;
    ``label(method)`` names the method's first seed in the legend."""
    colours = _colours(methods)
    for method in methods:
        for i, (_seed, conf, hit) in enumerate(_by_seed(cell, method)):
            x, y = curve(conf, hit)
            ax.plot(x, y, color=colours[method], lw=1.6, alpha=0.85, label=label(method) if i == 0 else None)


def roc_figure(cell: pd.DataFrame, methods: Sequence[str], auroc: dict[str, float], title: str) -> Figure:
    """ROC of detecting misses (positive) by low confidence, one curve per method and seed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    _seed_curves(ax, cell, methods, curves.roc, lambda m: f"{m} (AUROC {auroc.get(m, float('nan')):.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="chance")
    ax.axhline(0.95, color="0.75", lw=0.8, ls="--")
    ax.set(
        xlabel="hits flagged (false-positive rate)",
        ylabel="misses flagged (true-positive rate)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=title,
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def risk_coverage_figure(cell: pd.DataFrame, methods: Sequence[str], aurc: dict[str, float], title: str) -> Figure:
    """Selective risk (miss rate among accepted) vs coverage, most confident first."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    _seed_curves(ax, cell, methods, curves.risk_coverage, lambda m: f"{m} (AURC×1000 {aurc.get(m, float('nan')):.1f})")
    for i, (_seed, part) in enumerate(cell.groupby("seed", sort=True)):
        coverage, risk = curves.oracle_risk_coverage(part["hit"].to_numpy() == 1)
        ax.plot(coverage, risk, color="0.4", ls="--", lw=1, label="perfect ranking" if i == 0 else None)
    ax.set(
        xlabel="coverage (share of samples accepted)",
        ylabel="risk (miss rate among accepted)",
        xlim=(0, 1),
        ylim=(0, None),
        title=title,
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def accuracy_percentile_figure(cell: pd.DataFrame, methods: Sequence[str], title: str) -> Figure:
    """GradTrust's accuracy-vs-percentile curve: accuracy after removing the
    p% least confident samples."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    colours = _colours(methods)
    for method in methods:
        lines = [curves.accuracy_vs_percentile(conf, hit) for _seed, conf, hit in _by_seed(cell, method)]
        area = np.mean([acc.mean() for _pct, acc in lines]) if lines else float("nan")
        for i, (pct, acc) in enumerate(lines):
            label = f"{method} (area {area:.3f})" if i == 0 else None
            ax.plot(pct, acc, color=colours[method], lw=1.6, alpha=0.85, label=label)
    accuracy = (cell["hit"] == 1).mean()
    ax.axhline(accuracy, color="0.6", ls=":", lw=1, label=f"accuracy of all ({accuracy:.3f})")
    ax.set(
        xlabel="percentile of least-confident samples removed",
        ylabel="accuracy of the rest",
        xlim=(0, 100),
        title=title,
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def reliability_figure(
    cell: pd.DataFrame, methods: Sequence[str], ece: dict[str, float], title: str, bins: int = 15
) -> Figure:
    """Reliability diagram of each method whose scores are probabilities:
    accuracy per confidence bin against the diagonal, with bin counts below."""
    plt = _plt()
    fig, axes = plt.subplots(
        2,
        len(methods),
        figsize=(3.4 * len(methods) + 0.6, 4.8),
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1]},
        sharex=True,
        layout="constrained",
    )
    for column, method in enumerate(methods):
        ax, counts_ax = axes[0, column], axes[1, column]
        conf = cell[method].to_numpy(dtype=float)
        hit = cell["hit"].to_numpy() == 1
        centres, accuracy, mean_conf, count = curves.reliability(conf, hit, bins)
        width = 1 / bins
        ax.bar(
            centres,
            np.nan_to_num(accuracy),
            width=width * 0.95,
            color="tab:blue",
            alpha=0.8,
            edgecolor="white",
            label="accuracy",
        )
        gap_bottom = np.where(count > 0, np.minimum(accuracy, mean_conf), 0)
        gap_height = np.where(count > 0, np.abs(accuracy - mean_conf), 0)
        ax.bar(
            centres,
            gap_height,
            bottom=gap_bottom,
            width=width * 0.95,
            color="tab:red",
            alpha=0.3,
            edgecolor="tab:red",
            hatch="//",
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], color="0.3", ls="--", lw=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{method}: ECE {ece.get(method, float('nan')):.3f}")
        ax.set_ylabel("accuracy" if column == 0 else "")
        counts_ax.bar(centres, count, width=width * 0.95, color="0.5")
        counts_ax.set_yscale("log" if count.max() > 50 * max(1, np.median(count[count > 0])) else "linear")
        counts_ax.set_xlabel("confidence")
        counts_ax.set_ylabel("samples" if column == 0 else "")
        if column == 0:
            ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def heatmap_figure(
    matrix: Any,
    row_labels: Sequence[Any],
    col_labels: Sequence[Any],
    title: str,
    higher_is_better: bool,
    fmt: str = "{:.3f}",
    xlabel: str = "",
    ylabel: str = "",
) -> Figure:
    """An annotated heatmap; green is better whichever way the metric points."""
    plt = _plt()
    matrix = np.asarray(matrix, dtype=float)
    width = max(6.0, 0.9 * len(col_labels) + 2.0)
    height = max(2.2, 0.45 * len(row_labels) + 1.4)
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    cmap = "RdYlGn" if higher_is_better else "RdYlGn_r"
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels], rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    finite = matrix[np.isfinite(matrix)]
    middle = (finite.min() + finite.max()) / 2 if len(finite) else 0
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            ax.text(
                j,
                i,
                fmt.format(value),
                ha="center",
                va="center",
                fontsize=8,
                color="black" if abs(value - middle) < 0.35 * (np.ptp(finite) or 1) else "white",
            )
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig
