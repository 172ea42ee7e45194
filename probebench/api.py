"""probebench from Python: run a suite, evaluate scores, read runs, draw leaderboards.

The same code paths as the commands (``probebench run``, ``evaluate``,
``leaderboard``), returning pandas frames instead of printing tables. Nothing
heavy is imported until a function is called, so ``import probebench`` stays
instant. See docs/api.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probebench.errors import UserError
from probebench.paths import write_run_folder

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from probebench.registry import Registry
    from probebench.suite import Config

PathLike = str | Path
CUSTOM_SUITE = "custom"  # the name of a suite given as a dict without a "name" key


@dataclass
class Run:
    """One run folder: ``results`` (the tidy rows of results.csv), ``scores``
    (the per-sample scores.csv.gz, None when the run has none) and ``meta``
    (run.json: versions, the suite as resolved, metric directions, failures)."""

    path: Path
    results: pd.DataFrame
    scores: pd.DataFrame | None
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, {len(self.results)} rows, suite {self.meta.get('suite', {}).get('name')!r})"


def load_run(path: PathLike) -> Run:
    """The run written to ``path`` by ``probebench run``/``evaluate`` (or ``run`` below)."""
    import pandas as pd

    from probebench import results

    folder = Path(path)
    if not (folder / "results.csv").is_file():
        raise UserError(f"{folder} is not a run folder (no results.csv); pass the folder a run wrote")
    table, head = results.load_run(folder)
    scores_file = folder / "scores.csv.gz"
    scores = pd.read_csv(scores_file, keep_default_na=False, na_values=[""]) if scores_file.is_file() else None
    return Run(folder, table, scores, head)


def _config(registry: PathLike | None) -> Config:
    from probebench.suite import load_config

    return load_config(registry)


def _registry(config: Config) -> Registry:
    from probebench.registry import Registry

    return Registry(config.builtin)


def run(
    suite: str | Mapping[str, Any],
    *,
    seeds: Sequence[int] | None = None,
    registry: PathLike | None = None,
    device: str = "auto",
    out: PathLike | None = None,
    cache_dir: PathLike | None = None,
    data_root: PathLike | None = None,
    fresh: bool = False,
    overwrite: bool = False,
    log: Sequence[str] = (),
) -> Run:
    """Run a suite, as ``probebench run`` does, and return its ``Run``.

    ``suite`` is a suite name in the registry file (``registry``, default the
    project's registry.toml) or a dict with the keys of a ``[suite.NAME]``
    table (``name`` optional). A component that fails is recorded in
    ``run.meta["failures"]`` and the rest of the run completes. ``log``
    names loggers (e.g. ``["mlflow"]``) that receive the finished run, besides
    the suite's own ``log`` list.
    """
    from probebench.cache import ArtifactStore
    from probebench.pipeline.run import resolve_device, run_suite
    from probebench.suite import Config, parse_suite

    config = _config(registry)
    if isinstance(suite, Mapping):
        name = str(suite.get("name", CUSTOM_SUITE))
        table = {key: value for key, value in suite.items() if key != "name"}
        config = Config(config.path, config.builtin, {**config.suites, name: table})
    else:
        name = suite
    reg = _registry(config)
    resolved = parse_suite(
        config,
        name,
        reg,
        seeds=list(seeds) if seeds is not None else None,
        data_root=str(data_root) if data_root is not None else None,
    )
    store, chosen = ArtifactStore(cache_dir, fresh=fresh), resolve_device(device)
    for name in log:
        reg.get("logger", name)  # an unknown logger fails before anything runs
    target, _ = write_run_folder(
        Path(out) if out is not None else None,
        resolved.name,
        lambda partial: run_suite(resolved, reg, store, chosen, partial),
        overwrite,
    )
    from probebench.loggers import log_run, merged

    log_run(reg, merged(resolved.log, log), target)
    return load_run(target)


def evaluate(
    confidence: Mapping[str, Any] | Any,
    hit: Any,
    *,
    metrics: Sequence[str] | None = None,
    bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    registry: PathLike | None = None,
) -> pd.DataFrame:
    """Miss-detection metrics of per-sample confidences, with bootstrap intervals.

    ``confidence``: one array [N] (higher = more confident the prediction is
    right), or ``{method: array}``; ``hit``: bool [N], True where the
    prediction was right. Returns the rows of a results.csv cell: ``method``,
    ``metric``, ``value``, ``ci_low``, ``ci_high``, ``n`` (accuracy has method
    ``-``). ``bootstrap`` resamples (0: no intervals) at ``level``, drawn with
    ``seed``, shared by every method (paired intervals).
    """
    import pandas as pd

    from probebench.evaluate import evaluate_cell
    from probebench.imported import DEFAULT_METRICS
    from probebench.suite import Bootstrap

    hits = _finite("hit", hit).astype(bool)
    named = dict(confidence) if isinstance(confidence, Mapping) else {"confidence": confidence}
    arrays: dict[str, np.ndarray] = {}
    for method, values in named.items():
        arrays[str(method)] = _finite(f"confidence {method!r}", values)
        if len(arrays[str(method)]) != len(hits):
            raise UserError(f"confidence {method!r} has {len(arrays[str(method)])} values but hit has {len(hits)}")
    reg = _registry(_config(registry))
    chosen = list(metrics) if metrics is not None else list(DEFAULT_METRICS)
    objects = {name: reg.create("metric", name) for name in chosen}
    rows = evaluate_cell(arrays, hits, objects, Bootstrap(resamples=bootstrap, confidence=level, seed=seed))
    return pd.DataFrame(rows, columns=["method", "metric", "value", "ci_low", "ci_high", "n"])


def _finite(what: str, values: Any) -> np.ndarray:
    import numpy as np

    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise UserError(f"{what} must be 1-D (one value per sample), got shape {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise UserError(f"{what} has NaN or infinite values (first at index {int(np.argmax(~np.isfinite(array)))})")
    return array


def import_scores(
    files: PathLike | Sequence[PathLike],
    name: str,
    *,
    out: PathLike | None = None,
    overwrite: bool = False,
    higher_is_uncertain: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
    bootstrap: int = 1000,
    num_classes: int | None = None,
    registry: PathLike | None = None,
) -> Run:
    """Per-sample score files (CSV, Parquet, NPZ) as a run folder, as
    ``probebench evaluate FILE... --name NAME`` does; returns its ``Run``."""
    from probebench.imported import DEFAULT_METRICS, import_run
    from probebench.suite import Bootstrap

    paths = [files] if isinstance(files, str | Path) else list(files)
    reg = _registry(_config(registry))
    target, _ = write_run_folder(
        Path(out) if out is not None else None,
        name,
        lambda partial: import_run(
            [Path(p) for p in paths],
            name,
            reg,
            partial,
            metrics=list(metrics) if metrics is not None else DEFAULT_METRICS,
            bootstrap=Bootstrap(resamples=bootstrap),
            higher_is_uncertain=higher_is_uncertain,
            num_classes=num_classes,
        ),
        overwrite,
    )
    return load_run(target)


def leaderboard(
    runs: Run | PathLike | Iterable[Run | PathLike],
    *,
    metrics: Sequence[str] | None = None,
    rows: Sequence[str] = ("method",),
    cols: Sequence[str] = ("metric",),
    labels: bool = False,
) -> pd.DataFrame:
    """The leaderboard of one or more runs: ``rows`` x ``cols`` of the mean
    over seeds (``labels=True``: formatted 'v [lo, hi]' or 'v ± std' strings).
    Runs of different suite configs are never averaged: the ``config`` key is
    then added to the rows."""
    from probebench import results

    items = [runs] if isinstance(runs, Run | str | Path) else list(runs)
    paths = [item.path if isinstance(item, Run) else Path(item) for item in items]
    table, _heads = results.combine(paths)
    if metrics is not None:
        unknown = sorted(set(metrics) - set(table["metric"]))
        if unknown:
            raise UserError(f"no metric {unknown[0]!r} in these runs; they have {sorted(set(table['metric']))}")
        table = table[table["metric"].isin(list(metrics))]
    shown_rows = list(rows)
    if table["config"].nunique() > 1 and "config" not in [*rows, *cols]:
        shown_rows = ["config", *shown_rows]
    numbers, text = results.pivot(table, shown_rows, list(cols))
    return text if labels else numbers
