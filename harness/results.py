"""Tidy result tables, the run header, and the pivots every shown table is made of.

``results.csv`` has one row per (suite, dataset, corruption, severity,
classifier, seed, method, metric) with value, ci_low, ci_high and n; clean test
data has corruption ``none`` and severity 0. ``run.json`` is the header:
versions, commit, machine, times, the suite as resolved, metric directions and
failures. ``scores.csv.gz`` holds the per-sample confidences every number was
computed from.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.cache import atomic_write
from harness.errors import UserError

COLUMNS = ["suite", "dataset", "corruption", "severity", "classifier", "seed", "method", "metric",
           "value", "ci_low", "ci_high", "n"]
KEYS = COLUMNS[:8]
CLEAN = "none"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def header(suite_dict: dict, device: str, started: str) -> dict[str, Any]:
    import torch

    from harness import __version__

    return {
        "probebench_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "device": device,
        "started": started,
        "finished": None,
        "suite": suite_dict,
    }


def run_id(suite_name: str) -> str:
    return f"{suite_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def ensure_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write results to {out}: {exc.strerror or exc}; choose another --out") from None


def write_run(out: Path, rows: list[dict], run_header: dict, samples) -> None:
    """Write results.csv, scores.csv.gz and run.json atomically (header last).

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


def _write_run(out: Path, rows: list[dict], run_header: dict, samples) -> None:
    import pandas as pd

    table = pd.DataFrame(rows, columns=COLUMNS)
    atomic_write(out / "results.csv", lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    if samples is not None:
        import gzip

        # gzip without a file name or time stamp in its header: same scores, same bytes
        data = gzip.compress(samples.to_csv(index=False, float_format="%.7g").encode(), mtime=0)
        atomic_write(out / "scores.csv.gz", lambda tmp: tmp.write_bytes(data))
    atomic_write(out / "run.json", lambda tmp: tmp.write_text(json.dumps(run_header, indent=2, default=str) + "\n"))


# -- reading runs ------------------------------------------------------------
def find_runs(root: Path) -> list[Path]:
    """Run folders under ``root`` (those holding results.csv), oldest first."""
    if not root.is_dir():
        return []
    runs = [p.parent for p in root.glob("*/results.csv")]
    return sorted(runs, key=lambda p: _started(p))


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
    raise UserError(f"no run {spec!r}: expected a folder with results.csv (or 'latest'); runs live under {root}")


def load_run(run: Path):
    """(results table, header) of one run folder."""
    import pandas as pd

    try:
        table = pd.read_csv(run / "results.csv", keep_default_na=False, na_values=[""])
        head = json.loads((run / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read run {run}: {exc}") from None
    missing = set(COLUMNS) - set(table.columns)
    if missing:
        raise UserError(f"{run / 'results.csv'} lacks columns {sorted(missing)}; is it a probebench results file?")
    return table, head


# -- pivots --------------------------------------------------------------------
def aggregate(table, by: list[str]):
    """Mean, std and count over seeds (and any key not in ``by``) of each group;
    with one seed, its bootstrap interval is kept."""
    grouped = table.groupby(by, sort=False, dropna=False)
    out = grouped.agg(value=("value", "mean"), std=("value", "std"), seeds=("seed", "nunique"),
                      ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean"), cells=("value", "size"))
    return out.reset_index()


def format_cell(row, digits: int = 3) -> str:
    import math

    value = row["value"]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if row.get("seeds", 1) > 1 and row.get("std") == row.get("std"):
        return f"{value:.{digits}f} ± {row['std']:.{digits}f}"
    low, high = row.get("ci_low"), row.get("ci_high")
    if row.get("cells", 1) == 1 and low == low and high == high and low is not None:
        return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{value:.{digits}f}"


def pivot(table, rows: list[str], cols: list[str]):
    """Aggregated values with ``rows`` as the index and ``cols`` spread as columns.

    Returns (numbers, labels): the mean values as a DataFrame, and the same
    shape of formatted strings with intervals or ± std over seeds.
    """
    agg = aggregate(table, rows + cols)
    agg["label"] = agg.apply(format_cell, axis=1)
    numbers = agg.pivot_table(index=rows, columns=cols, values="value", aggfunc="first", sort=False)
    labels = agg.pivot_table(index=rows, columns=cols, values="label", aggfunc="first", sort=False)
    return numbers, labels.reindex(index=numbers.index, columns=numbers.columns)
