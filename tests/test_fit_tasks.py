"""Fit tasks (probebench/pipeline/fit.py): a seed's models are known before
the run starts, trained in worker processes beside each other, and the run's
bytes do not depend on how many ran at once."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from probebench.cache import ArtifactStore

FIT_SUITE = """
[suite.fits]
dataset = { name = "mnist-5k", limit = 200 }
classifier = { name = "cnn", epochs = 1, width = 4 }
scorers = ["msp", { name = "ensemble", members = 2 }, { name = "ensemble", label = "ensemble-mi", variant = "mi", members = 2 },
           { name = "prober", outputs = "none", min_misses = 2, prober_options = { epochs = 1 } }]
metrics = ["accuracy", "auroc"]
generators = [{ name = "realnvp", epochs = 1, levels = 1, blocks = 1, hidden = 4 }]
seeds = [0]
bootstrap = { resamples = 10 }
"""
WALL_CLOCK = ",train-seconds,"  # measured, not computed: differs between runs


@pytest.fixture
def fit_run(tiny_registry, tmp_path):
    from probebench.pipeline.data import load_splits
    from probebench.pipeline.stage import Run
    from probebench.registry import Registry
    from probebench.suite import load_config, parse_suite

    config = load_config(tiny_registry(FIT_SUITE))
    registry = Registry(config.builtin)
    suite = parse_suite(config, "fits", registry)
    store = ArtifactStore(tmp_path / "cache")
    return Run(suite, registry, store, load_splits(registry, suite.dataset, None, suite.validation), tmp_path / "out")


def test_a_seed_fits_its_classifier_flow_ensemble_members_and_fold_models_once_each(fit_run):
    from probebench.pipeline.fit import seed_fits

    fits = seed_fits(fit_run, 0)
    # two ensemble scorers share their one extra member; the prober's 2 folds train on complementary halves
    assert [(f.kind, f.seed, f.subset is None) for f in fits] == [
        ("classifier", 0, True),
        ("generator", 0, True),
        ("classifier", 1000, True),
        ("classifier", 0, False),
        ("classifier", 0, False),
    ]
    halves = torch.cat([fits[3].subset, fits[4].subset]).sort().values
    assert torch.equal(halves, torch.arange(200))


def run_cli(registry: Path, out: Path, cache: Path, threads: int) -> str:
    """``probebench run fits`` with torch on ``threads`` threads; its stderr."""
    from typer.testing import CliRunner

    from probebench.cli import app

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        args = ["run", "fits", "--registry", str(registry), "--out", str(out), "--cache-dir", str(cache)]
        result = CliRunner().invoke(app, [*args, "--device", "cpu"])
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    return result.output


def test_two_worker_processes_give_the_bytes_of_one_thread_in_process(tiny_registry, tmp_path, fit_run):
    from probebench.pipeline.fit import seed_fits

    registry = tiny_registry(FIT_SUITE)
    alone = run_cli(registry, tmp_path / "one", tmp_path / "cache-one", threads=1)
    beside = run_cli(registry, tmp_path / "two", tmp_path / "cache-two", threads=2)
    assert "models in" not in alone and "fit 5 models in 2 processes" in beside
    # the scorers requested what their prepare trained: nothing else is in the store
    requested = {f.key(fit_run) for f in seed_fits(fit_run, 0) if f.kind == "classifier"}
    for cache in ("cache-one", "cache-two"):
        assert {p.stem for p in (tmp_path / cache / "classifier").glob("*.pt")} == requested
    for name in ("results.csv", "scores.csv.gz"):
        one, two = (tmp_path / run / name for run in ("one", "two"))
        read = gzip.open if name.endswith(".gz") else open
        with read(one, "rt") as a, read(two, "rt") as b:
            assert [r for r in a if WALL_CLOCK not in r] == [r for r in b if WALL_CLOCK not in r], name
    # warm: every model is in the store, so no worker process starts
    assert "models in" not in run_cli(registry, tmp_path / "warm", tmp_path / "cache-two", threads=2)


def test_a_fresh_store_ignores_what_was_stored_before_it_opened_and_loads_what_it_stored(tmp_path):
    old = ArtifactStore(tmp_path)
    old.save("stage", "before", {"value": torch.tensor(1)})
    fresh = ArtifactStore(tmp_path, fresh=True)
    assert fresh.load("stage", "before") is None and not fresh.has("stage", "before")
    built = []
    for _ in range(2):
        fresh.get_or_build("stage", "now", lambda: built.append(1) or {"value": torch.tensor(2)})
    assert built == [1]  # built once in this run, then loaded
    worker = ArtifactStore(tmp_path, fresh_since=fresh.fresh_since)  # a worker process's view
    assert worker.has("stage", "now") and not worker.has("stage", "before")
