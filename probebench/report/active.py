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
SCORES = "active_scores.csv.gz"  # probebench.pipeline.active.SCORES
BASELINE = "random"  # probebench.pipeline.active.BASELINE
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


def load_hits(runs: list[Path]) -> pd.DataFrame | None:
    """Per-sample test outcomes behind ``load``'s accuracy rows: ``seed``,
    ``index``, ``hit``, ``round``, ``labels``, ``strategy``, ``oracle`` of every
    run's ``active_scores.csv.gz`` (a seed in several runs is kept from the last)."""
    import pandas as pd

    columns = ["seed", "index", "hit", "round", "labels", "strategy", "oracle"]
    frames = [pd.read_csv(run / SCORES, usecols=columns) for run in runs if (run / SCORES).is_file()]
    if not frames:
        return None
    table = pd.concat(frames, ignore_index=True)
    return table.drop_duplicates(subset=["seed", "index", "round", "strategy", "oracle"], keep="last")


def pooled_gains(hits: pd.DataFrame, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """``gain-over-random`` over several seeds: per (strategy, oracle, round),
    the mean over seeds of test accuracy minus ``random``'s at the same seed
    and round, with a percentile interval from a bootstrap over seeds and test
    images together (``probebench.evaluate.pooled_over_seeds``: every strategy
    sees the same draws, so the gains stay paired). Columns as
    ``aggregate``'s, ``std`` over seeds."""
    import numpy as np
    import pandas as pd

    from probebench.evaluate import pooled_over_seeds

    seeds = sorted(hits["seed"].unique().tolist())
    per_line: dict[tuple[str, str, int], list[np.ndarray]] = {}
    for seed_value in seeds:
        part = hits[hits["seed"] == seed_value]
        wide = part.pivot(index=[*RUN_KEYS, "round"], columns="index", values="hit")
        baseline = wide.xs(BASELINE, level="strategy").droplevel("oracle")  # random has pool-label only
        for (strategy, oracle, round_), row in wide.iterrows():
            if strategy == BASELINE or round_ == 0:
                continue
            gain = row.to_numpy(dtype=float) - baseline.loc[round_].to_numpy(dtype=float)
            per_line.setdefault((strategy, oracle, round_), []).append(gain)
    rows = [
        {"strategy": strategy, "oracle": oracle, "round": round_, **pooled_over_seeds(gains, resamples, level, seed)}
        for (strategy, oracle, round_), gains in per_line.items()
        if len(gains) == len(seeds)  # a line some seed lacks is not pooled
    ]
    return pd.DataFrame(rows)


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


def markdown(table: pd.DataFrame, hits: pd.DataFrame | None = None) -> str:
    """The active-learning tables in markdown; with the per-sample ``hits``
    (``load_hits``) of several seeds, the gain over ``random`` is pooled over
    seeds with an interval over seeds and test images (``pooled_gains``)."""
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
        note = ""
        if metric == "gain-over-random" and hits is not None and hits["seed"].nunique() > 1:
            agg = pooled_gains(hits).merge(agg[[*RUN_KEYS, "round"]], on=[*RUN_KEYS, "round"])
            agg["std"] = float("nan")  # show the pooled interval (the std over seeds is in the accuracy table)
            seeds = ", ".join(map(str, sorted(hits["seed"].unique())))
            note = (
                f"\n\nMean over seeds {seeds}; brackets: 95% bootstrap interval over seeds and test images "
                "together (seeds and images resampled, the same draws for every strategy)."
            )
        parts += ["", f"### {title}{note}", "", _markdown_table(_pivot(agg, "round"), "strategy \\ round")]
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
