"""Tidy result tables, the run header, and the pivots every shown table is made of.

``results.csv`` has one row per (suite, dataset, corruption, severity,
classifier, seed, method, metric) with value, ci_low, ci_high and n; clean test
data has corruption ``none`` and severity 0. ``run.json`` is the header:
versions, commit, machine, times, the suite as resolved, metric directions and
failures. ``scores.csv.gz`` holds the per-sample confidences every number was
computed from. ``replicates.npz`` holds each value's bootstrap replicates (the
metric on every resample its interval was taken over), which the tied-best
marks of leaderboards difference (``probebench.report.ties``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probebench.cache import atomic_write
from probebench.errors import UserError

if TYPE_CHECKING:  # pandas stays out of CLI start-up
    import pandas as pd

Header = dict[str, Any]  # a run.json

COLUMNS = [
    "suite",
    "dataset",
    "corruption",
    "severity",
    "classifier",
    "seed",
    "method",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
]
KEYS = COLUMNS[:8]
CLEAN = "none"
REPLICATES_FILE = "replicates.npz"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# Suite fields that do not change any value in results.csv: which seeds ran
# (seed is a column), prose, where local data files live on this machine, and
# which metrics were computed (metric is a column).
CONFIG_IGNORES = ("name", "seeds", "description", "data_root", "metrics")


def config_hash(suite_dict: dict[str, Any]) -> str:
    """A short hash of everything in a resolved suite that determines its numbers.

    Runs whose suite has the same hash may be pooled (e.g. seeds 0,1 from one
    run and 2 from another); runs that differ are never averaged together.
    Changing a component, an option, the corruptions or the bootstrap
    settings changes the hash; adding a seed or a metric does not.
    """
    import hashlib

    suite_dict = json.loads(json.dumps(suite_dict, default=str))  # tuples -> lists, as in run.json
    kept = {k: v for k, v in suite_dict.items() if k not in CONFIG_IGNORES}
    if not kept.get("validation"):  # suites without a hold-out keep the hash they had before the key existed
        kept.pop("validation", None)
    if not kept.get("new_classes"):  # as for validation: suites without held-out classes keep their hash
        kept.pop("new_classes", None)
    if kept.get("active") is None:  # likewise suites without an active-learning loop
        kept.pop("active", None)
    if not kept.get("attacks"):  # and suites without attacks (runs from before the key existed still match)
        kept.pop("attacks", None)
    text = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def header(suite_dict: dict[str, Any], device: str, started: str) -> Header:
    import torch

    from probebench import __version__

    return {
        "probebench_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "device": device,
        "started": started,
        "finished": None,
        "suite": suite_dict,
        "config_hash": config_hash(suite_dict),
    }


# run.json ``status``, as MLflow records a run's: only a finished run feeds a
# leaderboard, publish or compare unless the user passes --include-failed.
RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"


def run_status(head: Header) -> str:
    """A run's status. Runs written before run.json had one wrote it only once
    complete: finished, or failed when they recorded failures."""
    if head.get("status"):
        return str(head["status"])
    return FAILED if head.get("failures") else FINISHED


def write_status(out: Path, run_header: Header, status: str, error: str | None = None) -> None:
    """(Re)write ``out/run.json`` with ``status`` (and the error that stopped the run)."""
    run_header["status"] = status
    if error is not None:
        run_header["error"] = error
    try:
        _write_bytes(out / "run.json", (json.dumps(run_header, indent=2, default=str) + "\n").encode())
    except OSError:
        if status == RUNNING:
            raise  # nothing has run yet: the caller reports it
        # a run that is stopping already says why; a status it cannot write must not hide that


def metric_directions(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """run.json's ``metrics``: each metric plugin's direction and scale, by name."""
    return {
        name: {"higher_is_better": bool(m.higher_is_better), "scale": getattr(m, "scale", 1)}
        for name, m in metrics.items()
    }


def ensure_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write results to {out}: {exc.strerror or exc}; choose another --out") from None


def write_run(out: Path, rows: list[dict[str, Any]], run_header: Header, samples: pd.DataFrame | None) -> None:
    """Write results.csv, scores.csv.gz, replicates.npz (from the rows'
    ``replicates``) and run.json atomically (header last).

    A failure to write (disk full, permissions) leaves no half-written file and
    becomes one clear line; finished stages stay cached, so rerunning is cheap.
    """
    try:
        _write_run(out, rows, run_header, samples)
    except OSError as exc:
        raise UserError(
            f"could not write results to {out}: {exc.strerror or exc}; nothing half-written was left. "
            "Free space or choose another --out, then run the same command again (finished stages are cached)"
        ) from None


def _write_run(out: Path, rows: list[dict[str, Any]], run_header: Header, samples: pd.DataFrame | None) -> None:
    import pandas as pd

    from probebench.spreadsheet import safe_frame

    table = safe_frame(pd.DataFrame(rows, columns=COLUMNS))
    atomic_write(out / "results.csv", lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    if samples is not None:
        _write_bytes(out / "scores.csv.gz", scores_file_bytes(safe_frame(samples)))
    replicates = replicates_file_bytes(rows)
    if replicates is not None:
        _write_bytes(out / REPLICATES_FILE, replicates)
    _write_bytes(out / "run.json", (json.dumps(run_header, indent=2, default=str) + "\n").encode())


def scores_file_bytes(samples: pd.DataFrame) -> bytes:
    """A per-sample scores file: gzipped CSV, numbers written as the shortest text
    that reads back as the same float64 (so a metric recomputed from the file
    equals the run's bit for bit; 7 significant digits once tied distinct float32
    scores and moved AUGRC/AURC), gzip without a file name or time stamp in its
    header (same scores, same bytes)."""
    import gzip

    return gzip.compress(samples.to_csv(index=False).encode(), mtime=0)


def replicates_file_bytes(rows: list[dict[str, Any]]) -> bytes | None:
    """The rows' bootstrap replicates as an ``.npz`` (None when no row has any):
    ``replicates`` float64 [R, B], the full-sample ``value`` [R] they belong
    to, and one text array [R] per key column (``KEYS``). Zip entries carry a
    fixed date, so the same rows give the same bytes."""
    import io
    import zipfile

    import numpy as np

    from probebench.evaluate import REPLICATES

    kept = [row for row in rows if row.get(REPLICATES) is not None]
    if not kept:
        return None
    arrays = {
        "replicates": np.stack([np.asarray(row[REPLICATES], dtype=float) for row in kept]),
        "value": np.array([float(row["value"]) for row in kept]),
        **{key: np.array([str(row[key]) for row in kept]) for key in KEYS},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            entry = io.BytesIO()
            np.lib.format.write_array(entry, array, allow_pickle=False)
            archive.writestr(
                zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                entry.getvalue(),
                compress_type=zipfile.ZIP_DEFLATED,
            )
    return buffer.getvalue()


def load_replicates(run: Path) -> dict[tuple[str, ...], tuple[Any, float]] | None:
    """``{KEYS as text: (replicates float[B], value)}`` of a run folder's
    replicates.npz; None for a run written before replicates were kept."""
    import numpy as np

    path = run / REPLICATES_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            keys = zip(*(stored[key].tolist() for key in KEYS))
            return {
                key: (vector, float(value)) for key, vector, value in zip(keys, stored["replicates"], stored["value"])
            }
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read {path}: {exc}; run the suite again to rewrite it") from None


def _write_bytes(path: Path, data: bytes) -> None:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(path, write)


# -- reading runs ------------------------------------------------------------
def find_runs(root: Path) -> list[Path]:
    """Complete run folders under ``root`` (results.csv and run.json), oldest first.

    Hidden folders (a ``.partial`` run still being written, or interrupted)
    are not runs yet; a folder with results.csv but no run.json is skipped
    with a warning.
    """
    from probebench.console import console

    if not root.is_dir():
        return []
    runs = []
    for found in sorted(root.glob("*/results.csv")):
        run = found.parent
        if run.name.startswith("."):
            continue
        if not (run / "run.json").is_file():
            console.print(f"[yellow]skipping {run}: results.csv without run.json (not a complete probebench run)[/]")
            continue
        runs.append(run)
    return sorted(runs, key=lambda p: _started(p))


def finished_only(runs: list[Path], include_failed: bool, refuse: bool = False) -> list[Path]:
    """``runs`` whose status is finished; the others are skipped with one line
    each (or, with ``refuse``, the first one is an error). ``include_failed``
    keeps them all."""
    from probebench.console import console

    kept = []
    for run in runs:
        status = run_status(read_header(run))
        if status == FINISHED or include_failed:
            kept.append(run)
            continue
        message = f"run {run} is {status}{_failure_count(run)}"
        if refuse:
            raise UserError(f"{message}; use a finished run, or add --include-failed to use it anyway")
        console.print(f"[yellow]skipping {message} (--include-failed uses it)[/]")
    return kept


def _failure_count(run: Path) -> str:
    failures = read_header(run).get("failures") or []
    return f" ({len(failures)} component failure(s))" if failures else ""


def read_header(run: Path) -> Header:
    """A run folder's run.json."""
    try:
        head = json.loads((run / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {run / 'run.json'}: {exc}") from None
    if not isinstance(head, dict):
        raise UserError(f"{run / 'run.json'} is not a probebench run header")
    return head


def _started(run: Path) -> str:
    try:
        return json.loads((run / "run.json").read_text()).get("started") or ""
    except (OSError, ValueError):
        return ""


def resolve_run(spec: str, root: Path) -> Path:
    """A run folder from a path, a run id under ``root``, or ``latest``."""
    if spec == "latest":
        runs = find_runs(root)
        if not runs:
            raise UserError(f"no runs under {root}; run `probebench run` first")
        return runs[-1]
    for candidate in (Path(spec), root / spec):
        if (candidate / "results.csv").is_file():
            return candidate
    for candidate in (Path(spec), root / spec):
        if (candidate / "run.json").is_file():
            status = run_status(read_header(candidate))
            raise UserError(f"run {candidate} is {status} and has no results.csv; run its command again to resume")
    raise UserError(f"no run {spec!r}: expected a folder with results.csv (or 'latest'); runs live under {root}")


def load_run(run: Path) -> tuple[pd.DataFrame, Header]:
    """(results table, header) of one run folder."""
    import pandas as pd

    from probebench.spreadsheet import unescape_frame

    try:
        table = unescape_frame(pd.read_csv(run / "results.csv", keep_default_na=False, na_values=[""]))
        head = json.loads((run / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read run {run}: {exc}") from None
    missing = set(COLUMNS) - set(table.columns)
    if missing:
        raise UserError(f"{run / 'results.csv'} lacks columns {sorted(missing)}; is it a probebench results file?")
    return table, head


def run_config(head: Header) -> str:
    """The run's config hash (computed from its suite for runs written before it was stored)."""
    return str(head.get("config_hash") or config_hash(head.get("suite", {})))


def directions(heads: Header | Iterable[Header]) -> dict[str, bool]:
    """``{metric: higher_is_better}`` from one or more run headers."""
    return {m: bool(d["higher_is_better"]) for h in _headers(heads) for m, d in h.get("metrics", {}).items()}


def scales(heads: Header | Iterable[Header]) -> dict[str, float]:
    """``{metric: scale}`` (the factor a stored value is already multiplied by; default 1)."""
    return {m: d.get("scale", 1) for h in _headers(heads) for m, d in h.get("metrics", {}).items()}


def _headers(heads: Header | Iterable[Header]) -> list[Header]:
    return [heads] if isinstance(heads, dict) else list(heads)


def combine(runs: list[Path]) -> tuple[pd.DataFrame, dict[str, Header]]:
    """(table, headers) of several runs, with ``config`` and ``run`` columns added.

    Rows of the same config, cell, method and metric that appear in more than
    one run (the same seed run twice) are kept from the newest run only, so a
    repeated seed never counts twice. Returns the headers keyed by run name.
    """
    import pandas as pd

    if not runs:
        raise UserError("no runs to show; run `probebench run` first or pass run folders")
    frames: list[pd.DataFrame] = []
    heads: dict[str, Header] = {}
    for run in sorted(set(runs), key=_started):
        table, head = load_run(run)
        table["config"] = run_config(head)
        table["run"] = run.name
        frames.append(table)
        heads[run.name] = head
    table = pd.concat(frames, ignore_index=True)
    table = table.drop_duplicates(subset=KEYS + ["config"], keep="last").reset_index(drop=True)
    return table, heads


def flatten(value: object, prefix: str = "", plain_strings: bool = False) -> dict[str, str]:
    """Nested dicts as {'classifier.options.epochs': '8'}; lists stay JSON, and
    strings too unless ``plain_strings`` (as a logger's params show them)."""
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key), plain_strings))
        return out
    if plain_strings and isinstance(value, str):
        return {prefix: value}
    return {prefix: json.dumps(value, sort_keys=True, default=str)}


def config_differences(heads: dict[str, Header], configs: Iterable[str]) -> list[str]:
    """Suite fields that differ between the given configs, as 'key: a | b' lines."""
    by_config: dict[str, dict[str, Any]] = {}
    for head in heads.values():
        by_config.setdefault(run_config(head), head.get("suite", {}))
    suites = [
        flatten({k: v for k, v in by_config[c].items() if k not in CONFIG_IGNORES}) for c in configs if c in by_config
    ]
    keys = sorted({k for suite in suites for k in suite})
    lines = []
    for key in keys:
        values = [suite.get(key, "absent") for suite in suites]
        if len(set(values)) > 1:
            lines.append(f"{key}: " + " | ".join(values))
    return lines


# -- pivots --------------------------------------------------------------------
def aggregate(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per group of ``by``: the mean over seeds of each seed's value.

    Keys not in ``by`` other than the seed (say severity, in a methods x
    corruption view) are averaged within each seed first, so ``std`` is the
    spread over seeds of what is shown, not over heterogeneous cells. Columns:
    ``value`` (mean over seeds), ``std`` (over seeds, NaN for one seed),
    ``seeds``, ``cells`` (rows averaged per seed), and ``ci_low``/``ci_high``:
    the bootstrap interval of a single cell, the mean of the seeds' intervals
    for several seeds, NaN where cells were averaged. A table holding several
    suite configs must keep ``config`` in ``by``: different configs are never
    averaged together.
    """
    import numpy as np

    by = list(by)
    if "config" in table.columns and "config" not in by and table["config"].nunique() > 1:
        raise UserError(
            "these results come from runs with different suite configs; "
            "they cannot be averaged together (group by 'config' or filter one suite)"
        )
    if "metric" in table.columns and "metric" not in by and table["metric"].nunique() > 1:
        raise UserError(
            f"cannot average different metrics ({', '.join(table['metric'].unique())}); "
            "choose one with --metric or put 'metric' in --rows or --cols"
        )
    per_seed_keys = by + ([] if "seed" in by else ["seed"])
    # column-wise reductions of one groupby: equal to a named .agg and ~2.5x faster (the printed summary runs 4)
    groups = table.groupby(per_seed_keys, sort=False, dropna=False)
    per_seed = groups[["value", "ci_low", "ci_high"]].mean()
    per_seed["cells"] = groups.size()
    per_seed = per_seed.reset_index()
    averaged = per_seed["cells"] > 1
    per_seed.loc[averaged, ["ci_low", "ci_high"]] = np.nan
    if not by:
        per_seed["_all"] = 0
        by = ["_all"]
    seeds = per_seed.groupby(by, sort=False, dropna=False)
    out = seeds[["value"]].mean()
    out["std"] = seeds["value"].std()
    out["seeds"] = seeds.size()
    out[["ci_low", "ci_high"]] = seeds[["ci_low", "ci_high"]].mean()
    out["cells"] = seeds["cells"].max()
    out = out.reset_index()
    return out.drop(columns=["_all"], errors="ignore")


def decimals(values: Iterable[float | None]) -> int:
    """Decimals that show a column of numbers to about three significant digits:
    3 for values below 1 (AUROC, FPR), fewer for larger ones (AURC x1000);
    negative for a column whose values are all positive and below 0.001
    (e.g. a flow's reconstruction error): ``format_cell`` then writes them
    in scientific notation with that many digits after the point."""
    import math

    signed = [v for v in values if v is not None and v == v and math.isfinite(v)]
    finite = [abs(v) for v in signed]
    top = max(finite, default=0.0)
    if 0 < top < 1e-3 and min(signed) > 0:  # a positive quantity that is tiny everywhere: an error, a rate
        return -2
    if top <= 1:  # rates and probabilities keep three decimals, 1.000 included
        return 3
    return max(1, 3 - int(math.floor(math.log10(top))) - 1)


def format_cell(row: pd.Series | dict[str, Any], digits: int = 3) -> str:
    """'v [lo, hi]' for one cell with a bootstrap interval, 'v ± std' over
    several seeds, 'v' otherwise; 'n/a' where the metric is undefined."""
    import math

    value = row["value"]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    spec = f".{-digits}e" if digits < 0 else f".{digits}f"
    std = row.get("std")
    if row.get("seeds", 1) > 1 and std == std and std is not None:
        return f"{value:{spec}} ± {std:{spec}}"
    low, high = row.get("ci_low"), row.get("ci_high")
    if row.get("cells", 1) == 1 and low is not None and low == low and high == high:
        return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"
    return f"{value:{spec}}"


PIVOT_FIELDS = ("value", "label", "std", "seeds", "ci_low", "ci_high")


def shown_interval(value: Any, std: Any, seeds: Any, ci_low: Any, ci_high: Any) -> tuple[Any, Any]:
    """(low, high) of the interval ``format_cell`` shows, element-wise over
    arrays: mean ± std over several seeds, else the bootstrap interval; NaN
    where a cell shows none. Ties and regressions are judged on it."""
    import numpy as np

    value, std, seeds = (np.asarray(x, dtype=float) for x in (value, std, seeds))
    several = (seeds > 1) & np.isfinite(std)
    low = np.where(several, value - std, np.asarray(ci_low, dtype=float))
    high = np.where(several, value + std, np.asarray(ci_high, dtype=float))
    return low, high


def pivot(table: pd.DataFrame, rows: list[str], cols: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Aggregated values with ``rows`` as the index and ``cols`` spread as columns.

    Returns (numbers, labels): the mean values as a DataFrame, and the same
    shape of formatted strings with intervals or ± std over seeds (digits
    chosen per metric when metric is a key, else for the whole table).
    """
    frames = pivot_fields(table, rows, cols)
    return frames["value"], frames["label"]


def pivot_fields(table: pd.DataFrame, rows: list[str], cols: list[str]) -> dict[str, pd.DataFrame]:
    """``pivot`` for every field of ``PIVOT_FIELDS``: {field: a DataFrame of the
    same shape}, so a table can show values and keep their intervals."""
    agg = aggregate(table, rows + cols)
    if "metric" in agg.columns:
        places = {m: decimals(part["value"]) for m, part in agg.groupby("metric", sort=False)}
        agg["label"] = [format_cell(r, places[r["metric"]]) for _, r in agg.iterrows()]
    else:
        digits = decimals(agg["value"])
        agg["label"] = [format_cell(r, digits) for _, r in agg.iterrows()]
    return {field: _spread(agg, rows, cols, field) for field in PIVOT_FIELDS}


def _spread(agg: pd.DataFrame, rows: list[str], cols: list[str], field: str) -> pd.DataFrame:
    """``agg[field]`` with ``rows`` as index and ``cols`` as columns, both in
    order of first appearance (suite order: metrics as listed, severities 0..5)."""
    import pandas as pd

    def ordered(keys: list[str]) -> pd.Index:
        frame = agg[keys].drop_duplicates()
        return pd.MultiIndex.from_frame(frame) if len(keys) > 1 else pd.Index(frame[keys[0]], name=keys[0])

    series = agg.set_index(rows + cols)[field]
    if not cols:
        return series.to_frame(field).reindex(ordered(rows))
    wide = series.unstack(cols) if len(rows) else series.to_frame().T
    return wide.reindex(index=ordered(rows), columns=ordered(cols))
