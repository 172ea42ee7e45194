"""matplotlib figures of a run, drawn from its per-sample scores and results.

Each function returns a Figure (Agg backend, nothing shown). Several seeds
are drawn as thin lines of the method's style, one legend entry per method
with the metric's mean over seeds, the legend outside the axes. A method keeps
one colour + line-style pair (``method_styles``) in every figure of a report.
``png(fig)`` encodes a figure for inlining; ``save(fig, path)`` writes a file.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from probebench.report import curves

if TYPE_CHECKING:  # matplotlib and pandas are imported when a figure is drawn
    from pathlib import Path

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
    """The figure as PNG bytes (the figure stays open: ``close`` it when done)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)  # layout="constrained": no second draw for a tight bbox
    return buffer.getvalue()


def close(fig: Figure) -> None:
    _plt().close(fig)


def save_loss_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    """A PNG at ``path`` of per-epoch training curves (``history``: name -> one value per epoch)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, values in history.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# Line styles as dash patterns: ':' at 1.6 pt is too faint to tell apart from the grid.
LINE_STYLES: tuple[Any, ...] = ("-", (0, (5, 2)), (0, (1.2, 1.2)), (0, (6, 1.5, 1.2, 1.5)))
N_COLOURS = 10  # tab10; with 4 line styles, 20 distinct pairs (lcm(10, 4))


def method_styles(methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A distinct colour + line-style pair per method, for ``ax.plot(**style)``.

    Method i gets colour i mod 10 and style i mod 4, so neighbours differ in
    both and the first 20 methods never share a pair. Call it once per report
    with every method, so a method looks the same in each figure."""
    cmap = _plt().get_cmap("tab10")
    return {
        m: {"color": cmap(i % N_COLOURS), "linestyle": LINE_STYLES[i % len(LINE_STYLES)]} for i, m in enumerate(methods)
    }


def _legend_outside(fig: Figure, ax: Axes) -> None:
    """The legend to the right of the axes, where it covers no curve."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)


def wrapped(title: str, width_inches: float, fontsize: float = 10) -> str:
    """``title`` broken into lines that fit ``width_inches`` (about 0.55 em a character)."""
    return textwrap.fill(title, max(20, int(width_inches * 72 / (0.55 * fontsize))))


def _by_seed(cell: pd.DataFrame, method: str) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    for seed, part in cell.groupby("seed", sort=True):
        conf = part[method].to_numpy(dtype=float)
        hit = part["hit"].to_numpy() == 1
        if np.isfinite(conf).all():
            yield seed, conf, hit


def _styles(methods: Sequence[str], styles: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return styles if styles is not None else method_styles(methods)


def _seed_curves(
    ax: Axes,
    cell: pd.DataFrame,
    methods: Sequence[str],
    curve: Curve,
    label: Callable[[str], str],
    styles: dict[str, dict[str, Any]] | None = None,
) -> list[np.ndarray]:
    """One line per method and seed, ``curve(conf, hit)`` giving its x and y;
    ``label(method)`` names the method's first seed in the legend. Returns
    the y values drawn."""
    styles = _styles(methods, styles)
    drawn = []
    for method in methods:
        for i, (_seed, conf, hit) in enumerate(_by_seed(cell, method)):
            x, y = curve(conf, hit)
            ax.plot(x, y, **styles[method], lw=1.6, alpha=0.85, label=label(method) if i == 0 else None)
            drawn.append(y)
    return drawn


Styles = dict[str, dict[str, Any]]
WIDE = (8.4, 4.4)  # the axes of FIGSIZE plus room for the legend on the right


def roc_figure(
    cell: pd.DataFrame, methods: Sequence[str], auroc: dict[str, float], title: str, styles: Styles | None = None
) -> Figure:
    """ROC of detecting misses (positive) by low confidence, one curve per method and seed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=WIDE, layout="constrained")
    label = lambda m: f"{m} (AUROC {auroc.get(m, float('nan')):.3f})"  # noqa: E731
    _seed_curves(ax, cell, methods, curves.roc, label, styles)
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="chance")
    ax.axhline(0.95, color="0.75", lw=0.8, ls="--")
    ax.set(
        xlabel="hits flagged (false-positive rate)",
        ylabel="misses flagged (true-positive rate)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=title,
    )
    ax.grid(alpha=0.3)
    _legend_outside(fig, ax)
    return fig


def risk_limit(error_rate: float) -> float:
    """Top of the risk axis: twice the risk of accepting everything (the error
    rate, where every curve ends and a random ranking stays), so the range from
    a perfect ranking to one twice as bad as chance fills the plot."""
    return float(min(1.0, max(2 * error_rate, 1e-3)))


def risk_coverage_figure(
    cell: pd.DataFrame,
    methods: Sequence[str],
    aurc: dict[str, float],
    title: str,
    styles: Styles | None = None,
    log: bool = False,
) -> Figure:
    """Selective risk (miss rate among accepted) vs coverage, most confident
    first; the y-axis fitted by ``risk_limit`` (or logarithmic with ``log``)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=WIDE, layout="constrained")
    label = lambda m: f"{m} (AURC×1000 {aurc.get(m, float('nan')):.1f})"  # noqa: E731
    drawn = _seed_curves(ax, cell, methods, curves.risk_coverage, label, styles)
    for i, (_seed, part) in enumerate(cell.groupby("seed", sort=True)):
        coverage, risk = curves.oracle_risk_coverage(part["hit"].to_numpy() == 1)
        ax.plot(coverage, risk, color="0.4", ls="--", lw=1, label="perfect ranking" if i == 0 else None)
    error_rate = float((cell["hit"] != 1).mean())
    ax.axhline(error_rate, color="0.6", ls=":", lw=1, label=f"accept all ({error_rate:.3f})")
    ax.set(
        xlabel="coverage (share of samples accepted)",
        ylabel="risk (miss rate among accepted)",
        xlim=(0, 1),
        title=title,
    )
    if log:
        positive = np.concatenate([y[y > 0] for y in drawn] or [np.array([error_rate or 1.0])])
        ax.set_yscale("log")
        ax.set_ylim(max(positive.min(), 1e-4) / 1.5, 1.0)
    else:
        ax.set_ylim(0, risk_limit(error_rate))
    ax.grid(alpha=0.3, which="both" if log else "major")
    _legend_outside(fig, ax)
    return fig


def accuracy_limit(accuracy: float) -> tuple[float, float]:
    """The accuracy axis: from as far below the accuracy of all samples as
    perfect (1.0) is above it, to just over 1, so one method worse than chance
    cannot squeeze the others into a line."""
    return max(0.0, accuracy - (1 - accuracy) - 0.005), 1.0 + 0.005


def accuracy_percentile_figure(
    cell: pd.DataFrame, methods: Sequence[str], title: str, styles: Styles | None = None
) -> Figure:
    """GradTrust's accuracy-vs-percentile curve: accuracy after removing the
    p% least confident samples; the y-axis fitted by ``accuracy_limit``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=WIDE, layout="constrained")
    styles = _styles(methods, styles)
    for method in methods:
        lines = [curves.accuracy_vs_percentile(conf, hit) for _seed, conf, hit in _by_seed(cell, method)]
        area = np.mean([acc.mean() for _pct, acc in lines]) if lines else float("nan")
        for i, (pct, acc) in enumerate(lines):
            label = f"{method} (area {area:.3f})" if i == 0 else None
            ax.plot(pct, acc, **styles[method], lw=1.6, alpha=0.85, label=label)
    accuracy = float((cell["hit"] == 1).mean())
    ax.axhline(accuracy, color="0.6", ls=":", lw=1, label=f"accuracy of all ({accuracy:.3f})")
    ax.set(
        xlabel="percentile of least-confident samples removed",
        ylabel="accuracy of the rest",
        xlim=(0, 100),
        ylim=accuracy_limit(accuracy),
        title=title,
    )
    ax.grid(alpha=0.3)
    _legend_outside(fig, ax)
    return fig


def reliability_figure(
    cell: pd.DataFrame,
    methods: Sequence[str],
    ece: dict[str, float],
    title: str,
    bins: int = 15,
    columns: int = 4,
) -> Figure:
    """Reliability diagrams in a grid (at most ``columns`` a row): accuracy per
    confidence bin against the diagonal, with bin counts below. Every panel has
    the same axes and the same count scale, so panels compare at a glance."""
    plt = _plt()
    hit = cell["hit"].to_numpy() == 1
    binned = {m: curves.reliability(cell[m].to_numpy(dtype=float), hit, bins) for m in methods}
    columns = min(columns, len(methods))
    rows = -(-len(methods) // columns)
    fig = plt.figure(figsize=(2.9 * columns + 0.4, 3.3 * rows + 0.4), layout="constrained")
    grid = fig.add_gridspec(2 * rows, columns, height_ratios=[3, 1] * rows)
    counts_max = max(int(count.max()) for *_, count in binned.values())
    all_counts = np.concatenate([count[count > 0] for *_, count in binned.values()] or [np.array([1])])
    log_counts = counts_max > 50 * max(1.0, float(np.median(all_counts)))
    width = 1 / bins
    first: Axes | None = None
    first_counts: Axes | None = None
    for k, method in enumerate(methods):
        row, column = divmod(k, columns)
        ax = fig.add_subplot(grid[2 * row, column], sharex=first, sharey=first)
        counts_ax = fig.add_subplot(grid[2 * row + 1, column], sharex=ax, sharey=first_counts)
        first, first_counts = first or ax, first_counts or counts_ax
        centres, accuracy, mean_conf, count = binned[method]
        ax.bar(centres, np.nan_to_num(accuracy), width=width * 0.95, color="tab:blue", alpha=0.8, label="accuracy")
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
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.set_title(f"{method}: ECE {ece.get(method, float('nan')):.3f}", fontsize=9)
        ax.tick_params(labelbottom=False)
        counts_ax.bar(centres, count, width=width * 0.95, color="0.5")
        counts_ax.set_xlabel("confidence", fontsize=8)
        if column == 0:
            ax.set_ylabel("accuracy")
            counts_ax.set_ylabel("samples", fontsize=8)
        else:
            ax.tick_params(labelleft=False)
            counts_ax.tick_params(labelleft=False)
    assert first is not None and first_counts is not None
    first_counts.set_yscale("log" if log_counts else "linear")
    first_counts.set_ylim(0.8 if log_counts else 0, counts_max * (1.5 if log_counts else 1.05))
    handles, labels = first.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncols=2, frameon=False)
    fig.suptitle(wrapped(title, 2.9 * columns), fontsize=10)
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
    """An annotated heatmap; green is better whichever way the metric points.
    The title wraps to the figure's width, so it is never cut."""
    plt = _plt()
    matrix = np.asarray(matrix, dtype=float)
    width = max(6.0, 0.9 * len(col_labels) + 2.0)
    height = max(2.6, 0.45 * len(row_labels) + 1.8)
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
    ax.set(xlabel=xlabel, ylabel=ylabel)
    fig.suptitle(wrapped(title, width - 1.0), fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig
