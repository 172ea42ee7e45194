"""The label-free loop's gains pooled over seeds (``probebench.report.correction``)
and the pooled interval it shares with the active-learning gains
(``probebench.evaluate.pooled_over_seeds``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from probebench.evaluate import bootstrap_indices, percentile_interval, pooled_over_seeds
from probebench.executors.local import torch_threads
from probebench.pipeline import correct as stage
from probebench.pipeline.generate import TrainedFlow
from probebench.suite import Bootstrap, ComponentSpec
from tests import toy_correction as toy
from tests.conftest import builtin_modules


def width(pooled: dict) -> float:
    return pooled["ci_high"] - pooled["ci_low"]


def test_pooled_over_one_seed_is_the_bootstrap_over_its_samples():
    values = np.random.default_rng(0).normal(0.1, 1.0, 200)
    pooled = pooled_over_seeds([values], resamples=300, level=0.9)
    low, high = percentile_interval(values[bootstrap_indices(200, 300, 0)].mean(axis=1), 0.9)
    assert pooled["value"] == pytest.approx(values.mean())
    assert (pooled["ci_low"], pooled["ci_high"]) == pytest.approx((low, high))
    assert pooled["seeds"] == 1 and np.isnan(pooled["std"])


def test_the_pooled_interval_covers_the_spread_between_seeds():
    """Three seeds on the same images: when their means differ, the interval
    must show it (seeds are resampled too), not only the images' noise."""
    images = np.random.default_rng(1).normal(0.0, 1.0, 500)
    alike = pooled_over_seeds([images, images, images])
    apart = pooled_over_seeds([images - 1, images, images + 1])
    assert apart["value"] == pytest.approx(alike["value"])
    assert apart["std"] == pytest.approx(1.0) and alike["std"] == 0
    assert width(apart) > 5 * width(alike)
    assert alike["ci_low"] < images.mean() < alike["ci_high"]


@pytest.fixture
def ctx():
    with torch_threads(1):
        yield toy.context(level=toy.hit_level())


def run_seed(ctx, seed: int, out):
    """One seed of two real correctors on the toy, tuned on a validation cell,
    saved as a run saves its corrections; returns the metric rows."""
    from probebench.registry import Registry

    registry = Registry(builtin_modules())
    ctx = replace(ctx, seed=seed, val_images=toy.cell(seed=10 + seed)[0], val_labels=toy.cell(seed=10 + seed)[1])
    specs = [ComponentSpec("prober-latent", {"lr": 0.05}), ComponentSpec("latent-noise", {"lr": 0.05})]
    guide = stage.Guide(ctx.prober, threshold=0.5, level=toy.hit_level())
    state = stage.setup(specs, registry, ctx, {"identity": TrainedFlow(ctx.generator)}, {"prober": guide})
    stage.tune(ctx, state)
    images, labels = toy.cell(seed=seed)
    boot = Bootstrap(resamples=200, confidence=0.9, seed=0)
    return stage.correct_images(ctx, state, images, labels, boot, out=out, tag=f"seed{seed}_none-0")


def test_the_loops_gains_are_pooled_over_seeds_from_the_saved_corrections(ctx, tmp_path):
    from probebench.report import correction

    runs = [tmp_path / "run0", tmp_path / "run1"]
    rows = {seed: run_seed(ctx, seed, run) for seed, run in enumerate(runs)}
    gains = correction.load_gains(runs)
    assert set(gains["metric"]) == {"net-accuracy-gain", "tuned-net-accuracy-gain"}
    assert sorted(gains["seed"].unique()) == [0, 1] and set(gains["corruption"]) == {"none"}
    stored = gains.set_index(["method", "metric", "seed"])["values"]
    for seed, seed_rows in rows.items():  # each saved per-sample gain averages to its run's row
        for row in seed_rows:
            if row["metric"] in ("net-accuracy-gain", "tuned-net-accuracy-gain"):
                assert stored[row["method"], row["metric"], seed].mean() == pytest.approx(row["value"])
    pooled = correction.pooled(gains, resamples=200).set_index(["method", "metric"])
    # the prober edit fixes all six misses of 16 on both seeds and breaks nothing: +0.375, interval above 0
    fixed = pooled.loc[("prober-latent", "net-accuracy-gain")]
    assert fixed["value"] == pytest.approx(6 / 16) and fixed["ci_low"] > 0 and fixed["seeds"] == 2
    text = correction.markdown(gains)
    assert text.index("tuned gain, clean") < text.index("net gain, clean")
    line = next(row for row in text.splitlines() if row.startswith("| `prober-latent` |"))
    assert "| +0.375 [+" in line and line.count("✱") == 2  # both intervals exclude zero
    ordered = correction.markdown(gains, ["prober-latent", "latent-noise"])
    assert ordered.index("| `prober-latent` |") < ordered.index("| `latent-noise` |")  # the suite's order
    # one seed alone has nothing to pool
    assert correction.markdown(gains[gains.seed == 0]) == ""
