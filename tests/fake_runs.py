"""Write small run folders (results.csv, run.json, scores.csv.gz) without
training anything, for the leaderboard, report and compare tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from probebench import results
from probebench.evaluate import evaluate_cell
from probebench.plugins.metrics.failure import register_metrics
from probebench.suite import Bootstrap

METRICS = {cls.name: cls() for cls in register_metrics()}


def suite_dict(name: str = "mnist-quick", seeds=(0,), corruptions=(), epochs: int = 8, resamples: int = 100) -> dict:
    return {
        "name": name,
        "description": "hand-made",
        "dataset": {"name": "mnist-5k", "options": {}, "label": "mnist-5k"},
        "classifier": {"name": "cnn", "options": {"epochs": epochs}, "label": "cnn"},
        "scorers": [{"name": m, "options": {}, "label": m} for m in ("msp", "entropy")],
        "metrics": list(METRICS),
        "seeds": list(seeds),
        "corruptions": [{"name": c, "options": {}, "severities": list(s)} for c, s in corruptions],
        "clean": True,
        "bootstrap": {"resamples": resamples, "confidence": 0.95, "seed": 0},
        "data_root": None,
        "batch_size": 256,
    }


def make_run(
    out: Path,
    name: str = "mnist-quick",
    seeds=(0,),
    corruptions=(),
    n: int = 200,
    epochs: int = 8,
    separation: float = 2.0,
    started: str = "2026-01-01T00:00:00+00:00",
    pngs: int = 0,
    suite: dict | None = None,
) -> Path:
    """A run folder whose numbers are computed, by the real metrics, from
    synthetic per-sample scores: ``msp`` separates hits from misses by
    ``separation`` (a probability), ``entropy`` by half as much (negative)."""
    suite = suite or suite_dict(name, seeds, corruptions, epochs)
    name = suite["name"]
    cells = [(results.CLEAN, 0)] + [(c, s) for c, sevs in corruptions for s in sevs]
    rows, frames = [], []
    for seed in seeds:
        for corruption, severity in cells:
            rng = np.random.default_rng([seed, severity, len(corruption)])
            hit = rng.random(n) < 0.9 - 0.1 * severity
            logit = rng.normal(size=n) + separation * hit + 1.0
            msp = 1 / (1 + np.exp(-logit))
            entropy = -np.log1p(np.exp(-(rng.normal(size=n) + separation / 2 * hit)))
            keys = {
                "suite": name,
                "dataset": "mnist-5k",
                "corruption": corruption,
                "severity": severity,
                "classifier": "cnn",
                "seed": seed,
            }
            found = evaluate_cell({"msp": msp, "entropy": entropy}, hit, METRICS, Bootstrap(resamples=100))
            rows += [{**keys, **row} for row in found]
            frames.append(
                pd.DataFrame(
                    {
                        **keys,
                        "index": np.arange(n),
                        "label": rng.integers(0, 10, n),
                        "prediction": rng.integers(0, 10, n),
                        "hit": hit.astype(int),
                        "msp": msp,
                        "entropy": entropy,
                    }
                )
            )
    head = {
        "probebench_version": "0.1.0",
        "git_commit": "0123456789abcdef",
        "torch_version": "2.14.1",
        "python_version": "3.11",
        "machine": {"platform": "test-machine", "cpu_count": 2},
        "device": "cpu",
        "started": started,
        "finished": started,
        "seconds": 1.0,
        "suite": suite,
        "config_hash": results.config_hash(suite),
        "metrics": {
            m: {"higher_is_better": c.higher_is_better, "scale": getattr(c, "scale", 1)} for m, c in METRICS.items()
        },
        "failures": [],
    }
    out.mkdir(parents=True, exist_ok=True)
    results.write_run(out, rows, head, pd.concat(frames, ignore_index=True))
    for i in range(pngs):
        _write_png(out / f"grid-{i}.png")
    return out


def _write_png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.imshow(np.arange(16).reshape(4, 4))
    fig.savefig(path)
    plt.close(fig)


def write_table(
    out: Path,
    rows: list[dict],
    suite: dict | None = None,
    started: str = "2026-01-01T00:00:00+00:00",
    directions: dict | None = None,
    scales: dict | None = None,
) -> Path:
    """A run folder holding exactly ``rows`` (tidy dicts; missing keys get defaults)."""
    suite = suite or suite_dict()
    defaults = {
        "suite": suite["name"],
        "dataset": "mnist-5k",
        "corruption": "none",
        "severity": 0,
        "classifier": "cnn",
        "seed": 0,
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "n": 100,
    }
    table = pd.DataFrame([{**defaults, **row} for row in rows], columns=results.COLUMNS)
    directions = directions or {"auroc": True, "fpr95": False, "accuracy": True, "aurc": False}
    head = {
        "suite": suite,
        "started": started,
        "config_hash": results.config_hash(suite),
        "git_commit": "abc",
        "metrics": {m: {"higher_is_better": d, "scale": (scales or {}).get(m, 1)} for m, d in directions.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "results.csv", index=False)
    (out / "run.json").write_text(json.dumps(head))
    return out
