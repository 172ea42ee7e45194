"""What a person reads of the active-learning stage (probebench/pipeline/active.py):
the learning curve (test accuracy vs labels, one line per strategy, seeds as a
band), accuracy per round and strategy, the gain over ``random`` at equal
budget, and how often the oracle disagrees with the source label on
generated images. All are pivots of the runs' ``active.csv``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from probebench.results import aggregate, decimals, format_cell

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

TABLE = "active.csv"  # probebench.pipeline.active.TABLE (the report does not import the pipeline)
RUN_KEYS = ["strategy", "oracle"]


def load(runs: list[Path]) -> pd.DataFrame | None:
    """The active rows of ``runs`` (None when none has them), with a ``run`` column;
    a seed that appears in several runs is kept from the last."""
    import pandas as pd

    frames = []
    for run in runs:
        if (run / TABLE).is_file():
            frame = pd.read_csv(run / TABLE, keep_default_na=False, na_values=[""])
            frame["run"] = run.name
            frames.append(frame)
    if not frames:
        return None
    table = pd.concat(frames, ignore_index=True)
    keys = ["seed", "method", "metric", "round", "labels", "strategy", "oracle"]
    return table.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)


def line(strategy: str, oracle: str) -> str:
    """How a strategy is named in tables and legends: its oracle shown for generated images."""
    return strategy if oracle == "pool-label" else f"{strategy} ({oracle})"


def accuracy(table: pd.DataFrame) -> pd.DataFrame:
    """Per (strategy, oracle, round, labels): test accuracy mean, std and seeds (aggregate's columns)."""
    rows = table[(table["metric"] == "accuracy")]
    return aggregate(rows.drop(columns=["run"], errors="ignore"), [*RUN_KEYS, "round", "labels"])


def metric_by_round(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = table[table["metric"] == metric]
    return aggregate(rows.drop(columns=["run"], errors="ignore"), [*RUN_KEYS, "round"])


def _pivot(agg: pd.DataFrame, column: str) -> pd.DataFrame:
    """Formatted cells: one row per strategy line, one column per ``column`` value."""
    digits = decimals(agg["value"])
    agg = agg.assign(line=[line(s, o) for s, o in zip(agg["strategy"], agg["oracle"], strict=True)])
    agg["label"] = [format_cell(r, digits) for _, r in agg.iterrows()]
    return agg.pivot(index="line", columns=column, values="label").reindex(agg["line"].drop_duplicates())


def markdown(table: pd.DataFrame) -> str:
    """The active-learning tables in markdown."""
    acc = accuracy(table)
    by_labels = _pivot(acc, "labels")
    parts = [
        "### Active learning: test accuracy by labelled images",
        "",
        "Each round a strategy acquires the budget and the classifier is retrained; `±`: std over seeds, "
        "brackets: 95% bootstrap interval over test images (one seed). A strategy in parentheses names the "
        "oracle that labelled its generated images.",
        "",
        _markdown_table(by_labels, "strategy \\ labels"),
    ]
    for metric, title in (
        ("gain-over-random", "Gain in test accuracy over `random` at equal label budget (paired over test images)"),
        ("acquired-miss-rate", "Acquired images the classifier of that round got wrong (by the oracle's label)"),
        (
            "oracle-source-disagreement",
            "Generated images whose oracle label differs from their source image's label",
        ),
    ):
        agg = metric_by_round(table, metric)
        if agg.empty:
            continue
        parts += ["", f"### {title}", "", _markdown_table(_pivot(agg, "round"), "strategy \\ round")]
    return "\n".join(parts) + "\n"


def _markdown_table(frame: pd.DataFrame, corner: str) -> str:
    header = [corner, *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        lines.append("| " + " | ".join([f"`{index}`", *(str(v) if v == v else "" for v in row)]) + " |")
    return "\n".join(lines)


def learning_curve_figure(table: pd.DataFrame, title: str) -> Figure:
    """Test accuracy vs labelled images, one line per strategy (mean over
    seeds) with a band from the lowest to the highest seed."""
    import numpy as np

    from probebench.report.plots import _plt, method_styles

    rows = table[table["metric"] == "accuracy"]
    lines = list(dict.fromkeys(line(s, o) for s, o in zip(rows["strategy"], rows["oracle"], strict=True)))
    styles = method_styles(lines)
    fig = _plt().figure(figsize=(8.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for (strategy, oracle), part in rows.groupby(RUN_KEYS, sort=False):
        per_seed = part.pivot_table(index="labels", columns="seed", values="value")
        x = per_seed.index.to_numpy(dtype=float)
        mean = per_seed.mean(axis=1).to_numpy()
        name = line(strategy, oracle)
        ax.plot(
            x,
            mean,
            marker="o",
            ms=3,
            lw=1.6,
            label=f"{name} ({per_seed.shape[1]} seed{'' if per_seed.shape[1] == 1 else 's'})",
            **styles[name],
        )
        if per_seed.shape[1] > 1:
            low, high = np.nanmin(per_seed.to_numpy(), axis=1), np.nanmax(per_seed.to_numpy(), axis=1)
            ax.fill_between(x, low, high, color=styles[name]["color"], alpha=0.12, lw=0)
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    return fig
