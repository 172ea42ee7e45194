"""Correctors on a toy problem whose answer is known (tests/toy_correction.py),
the per-sample stop, the correction metrics on hand-made outcomes, and the
correction stage inside a run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from probebench.errors import UserError
from probebench.pipeline import correct as stage
from probebench.pipeline.evaluate import CORRECTION_METRICS, Outcome, outcome_rows
from probebench.pipeline.generate import TrainedFlow
from probebench.plugins.correctors.counterfactual import (
    ConfidenceAscent,
    LatentNoise,
    MonotonePath,
    PixelProber,
    ProberLatent,
)
from probebench.suite import Bootstrap, ComponentSpec
from tests import toy_correction as toy
from tests.conftest import builtin_modules


@pytest.fixture
def one_thread():
    """Tiny tensors run faster on one thread on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ctx(one_thread):
    return toy.context(level=toy.hit_level())


def predictions(ctx, images):
    return ctx.classifier(images).argmax(dim=1)


CROSSING = [
    ProberLatent(lr=0.05),
    PixelProber(lr=0.01),
    ConfidenceAscent(eta=0.1, target="prober"),
    ConfidenceAscent(eta=0.1, target="runner-up"),
    ConfidenceAscent(eta=1.0, target="prober", normalize=False),
    MonotonePath(lr=0.05, target="prober"),
    MonotonePath(lr=0.05, target="runner-up"),
]


@pytest.mark.parametrize("corrector", CROSSING, ids=lambda c: f"{c.name}-{getattr(c, 'target', '')}")
def test_every_corrector_turns_every_toy_miss_into_a_hit(ctx, corrector):
    images, labels = toy.cell(n_miss=6, n_hit=0)
    assert (predictions(ctx, images) != labels).all()  # all misses to start with
    result = corrector.correct(ctx, images)
    assert (predictions(ctx, result.images) == labels).all()
    assert (result.steps > 0).all() and (result.steps < corrector.max_steps).all()
    assert result.details["reached"].all() and not result.details["diverged"].any()
    assert result.images.min() >= 0 and result.images.max() <= 1


def test_monotone_path_returns_a_path_that_climbs(ctx):
    images, _ = toy.cell(n_miss=6, n_hit=0)
    result = MonotonePath(lr=0.05, length=6).correct(ctx, images)
    path = result.details["path"]
    assert path.shape == (6, 6, 1, 4, 4)
    assert torch.equal(path[:, -1], result.images)
    p_hit = toy.prober_of_m(path.mean(dim=(2, 3, 4)))
    assert (p_hit[:, -1] > p_hit[:, 0]).all()
    assert (p_hit[:, 1:] >= p_hit[:, :-1] - 1e-3).float().mean() > 0.9  # monotone up to a small slack


def test_latent_noise_takes_steps_of_the_prober_edits_size_in_random_directions(ctx):
    images, labels = toy.cell(n_miss=12, n_hit=0)
    guided = ProberLatent(lr=0.05).correct(ctx, images)
    noise = LatentNoise(lr=0.05).correct(ctx, images)
    assert torch.allclose(noise.details["latent_norm"], guided.details["latent_norm"])
    # identity flow: the latent step is the pixel step, shortened only where clamping to [0,1] bites
    distance = (noise.images - images).flatten(1).norm(dim=1)
    unclamped = (noise.images > 0).flatten(1).all(1) & (noise.images < 1).flatten(1).all(1)
    assert (distance <= guided.details["latent_norm"] + 1e-5).all()
    assert unclamped.any() and torch.allclose(distance[unclamped], guided.details["latent_norm"][unclamped], atol=1e-5)
    # a random 16-d direction moves the mean brightness a quarter as far, either way: fewer misses corrected
    assert (predictions(ctx, noise.images) == labels).sum() < (predictions(ctx, guided.images) == labels).sum()
    assert torch.equal(LatentNoise(lr=0.05).correct(ctx, images).images, noise.images)  # seeded
    assert not torch.equal(LatentNoise(lr=0.05).correct(replace(ctx, seed=1), images).images, noise.images)


def test_reference_stop_never_fires_under_a_smoothed_prober_but_the_relative_one_does(ctx):
    images, labels = toy.cell()
    capped = ProberLatent(lr=0.05, threshold=0.92, max_steps=40).correct(ctx, images)
    assert (capped.steps == 40).all() and not capped.details["reached"].any()
    relative = ProberLatent(lr=0.05, max_steps=40).correct(ctx, images)
    assert relative.details["reached"].all()
    miss = predictions(ctx, images) != labels
    assert relative.steps[miss].float().median() < 10


def test_the_stop_level_comes_from_the_context_and_is_required(ctx):
    images, _ = toy.cell(n_miss=2, n_hit=0)
    with pytest.raises(UserError, match="prober_hit_level"):
        ProberLatent().correct(replace(ctx, prober_hit_level=None), images)
    with pytest.raises(UserError, match="generator"):
        ProberLatent().correct(replace(ctx, generator=None), images)
    with pytest.raises(UserError, match="ctx.prober, a differentiable callable"):
        ProberLatent().correct(replace(ctx, prober=None), images)


def test_finished_samples_stop_changing(ctx):
    images, _ = toy.cell(n_miss=6, n_hit=10)
    corrector = ProberLatent(lr=0.05)
    batched = corrector.correct(ctx, images)
    untouched = batched.steps == 0
    assert untouched.any() and torch.equal(batched.images[untouched], images[untouched])  # bit-identical
    for i in range(len(images)):
        alone = ProberLatent(lr=0.05, max_steps=max(1, int(batched.steps[i]))).correct(ctx, images[i : i + 1])
        # stopping at its own step count gives the same image: nothing moved after it stopped
        assert torch.allclose(alone.images[0], batched.images[i], atol=1e-6)
        assert alone.steps[0] == batched.steps[i]
    # a longer cap changes nothing for samples that stopped on their own
    longer = ProberLatent(lr=0.05, max_steps=5000).correct(ctx, images)
    assert torch.equal(longer.steps, batched.steps) and torch.allclose(longer.images, batched.images, atol=1e-6)


def test_batching_and_chunking_do_not_change_any_edit(ctx):
    images, _ = toy.cell(n_miss=6, n_hit=10)
    whole = MonotonePath(lr=0.05).correct(ctx, images)
    chunked = MonotonePath(lr=0.05).correct(replace(ctx, batch_size=8), images)  # one image per chunk (T=8)
    assert torch.equal(whole.steps, chunked.steps)
    assert torch.allclose(whole.images, chunked.images, atol=1e-6)


def test_flip_stop_stops_right_after_the_prediction_changes(ctx):
    images, labels = toy.cell(n_miss=6, n_hit=0)
    result = ProberLatent(lr=0.01, stop="flip").correct(ctx, images)
    assert (predictions(ctx, result.images) == labels).all()
    for i in range(len(images)):
        before = ProberLatent(lr=0.01, stop="flip", max_steps=int(result.steps[i]) - 1) if result.steps[i] > 1 else None
        if before is not None:
            assert predictions(ctx, before.correct(ctx, images[i : i + 1]).images)[0] != labels[i]


def test_list_latents_of_multiscale_flows(ctx):
    images, labels = toy.cell(n_miss=6, n_hit=0)
    split = replace(ctx, generator=toy.SplitFlow())
    result = ProberLatent(lr=0.05).correct(split, images)
    assert (predictions(ctx, result.images) == labels).all()


class ExplodingFlow(toy.IdentityFlow):
    """Decodes to NaN once the mean brightness passes 0.58 (as unstable flows do)."""

    def decode(self, z):
        bad = z.flatten(1).mean(dim=1) > 0.58
        return torch.where(bad.view(-1, 1, 1, 1), torch.full_like(z, float("nan")), z)


def test_a_decode_that_blows_up_stops_the_sample_at_its_last_finite_state(ctx):
    images, _ = toy.cell(n_miss=6, n_hit=0)
    result = ProberLatent(lr=0.05).correct(replace(ctx, generator=ExplodingFlow()), images)
    assert result.details["diverged"].all() and not result.details["reached"].any()
    assert torch.isfinite(result.images).all()
    assert (result.images.mean(dim=(1, 2, 3)) <= 0.58 + 1e-6).all()


@pytest.mark.parametrize(
    "cls, options, message",
    [
        (ProberLatent, {"lr": 0}, "lr must be > 0"),
        (ProberLatent, {"stop": "never"}, "stop must be one of"),
        (ProberLatent, {"threshold": 1.5}, "threshold is a probability"),
        (ConfidenceAscent, {"target": "top-class"}, "target must be"),
        (MonotonePath, {"lam": -1.0}, "lam must be >= 0"),
        (LatentNoise, {"max_steps": 0}, "max_steps must be >= 1"),
    ],
)
def test_bad_options_fail_in_one_line(cls, options, message):
    with pytest.raises(UserError, match=message):
        cls(**options)


# -- metrics on hand-made outcomes ----------------------------------------------
BOOT = Bootstrap(resamples=200, confidence=0.9, seed=0)


def hand_made() -> Outcome:
    hit = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], bool)
    after = np.array([1, 1, 0, 0, 1, 1, 1, 1, 0, 1], bool)
    flagged = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 0], bool)
    edit = np.array([1.0, 2.0, 3.0, 6.0, 0, 0, 0, 0, 5.0, 0])
    steps = np.array([10, 20, 30, 40, 0, 0, 0, 0, 7, 0])
    return Outcome(hit, after, flagged, edit, steps, seconds=2.0)


def test_correction_metrics_on_hand_made_outcomes():
    rows = {r["metric"]: r for r in outcome_rows(hand_made(), BOOT)}
    assert set(rows) == set(CORRECTION_METRICS) - {"tuned-net-accuracy-gain"}  # no tuned threshold given
    assert rows["correction-rate"]["value"] == pytest.approx(2 / 4) and rows["correction-rate"]["n"] == 4
    assert rows["break-rate"]["value"] == pytest.approx(1 / 6) and rows["break-rate"]["n"] == 6
    # the loop edits the flagged: misses 0 and 1 fixed (+2), miss 2 not fixed, hit 8 broken (-1)
    assert rows["net-accuracy-gain"]["value"] == pytest.approx(1 / 10) and rows["net-accuracy-gain"]["n"] == 10
    assert rows["edit-size"]["value"] == pytest.approx(3.0)  # over the true misses
    # the reference's denominators: misses 0, 1, 2 are flagged, 0 and 1 fixed; the one flagged hit (8) broken
    assert (
        rows["correction-rate-flagged"]["value"] == pytest.approx(2 / 3) and rows["correction-rate-flagged"]["n"] == 3
    )
    assert rows["break-rate-flagged"]["value"] == 1.0 and rows["break-rate-flagged"]["n"] == 1
    # after the loop 7 of 10 are right; abstaining on the 4 flagged answers 6 images, 5 of them right
    assert rows["loop-accuracy"]["value"] == pytest.approx(7 / 10)
    assert (
        rows["abstain-selective-accuracy"]["value"] == pytest.approx(5 / 6) and rows["abstain-coverage"]["value"] == 0.6
    )
    assert rows["median-steps"]["value"] == 25 and rows["p90-steps"]["value"] == pytest.approx(37)
    assert rows["images-per-second"]["value"] == pytest.approx(5.0)
    for metric in ("correction-rate", "break-rate", "net-accuracy-gain", "edit-size"):
        row = rows[metric]
        assert row["ci_low"] <= row["value"] <= row["ci_high"] and row["ci_low"] < row["ci_high"]
    assert np.isnan(rows["median-steps"]["ci_low"])


def test_tuned_gain_uses_the_tuned_flags():
    tuned = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], bool)  # flags only the two misses the edit fixes
    outcome = replace(hand_made(), tuned_flagged=tuned)
    rows = {r["metric"]: r for r in outcome_rows(outcome, BOOT)}
    assert set(rows) == set(CORRECTION_METRICS)
    assert rows["tuned-net-accuracy-gain"]["value"] == pytest.approx(2 / 10)


def test_gain_threshold_maximises_validation_gain_and_flags_nothing_when_nothing_helps():
    p = np.array([0.1, 0.2, 0.2, 0.3, 0.5, 0.9])
    gain = np.array([1, 1, -1, 1, -1, 0])
    t = stage.gain_threshold(p, gain)
    assert (p < t).tolist() == [True, True, True, True, False, False]  # +2; ties at 0.2 flag together
    assert stage.gain_threshold(p, -np.abs(gain)) == pytest.approx(0.1)  # every flag hurts: flag nothing
    assert not (p < stage.gain_threshold(p, -np.abs(gain))).any()
    assert not (p < stage.gain_threshold(p, np.zeros(6))).any()  # no gain anywhere: fewest flagged


def test_metrics_without_misses_are_nan_not_errors():
    outcome = Outcome(np.ones(4, bool), np.ones(4, bool), np.zeros(4, bool), np.zeros(4), np.zeros(4), 1.0)
    rows = {r["metric"]: r for r in outcome_rows(outcome, BOOT)}
    assert np.isnan(rows["correction-rate"]["value"]) and rows["correction-rate"]["n"] == 0
    assert rows["break-rate"]["value"] == 0 and rows["net-accuracy-gain"]["value"] == 0


def test_flag_threshold_maximises_youden_and_hit_level_is_the_hits_median():
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    hit = np.array([0, 0, 1, 1, 1], bool)
    assert stage.flag_threshold(p, hit) == pytest.approx(0.3)  # flags exactly the two misses
    assert stage.hit_level(p, hit) == pytest.approx(0.8)
    assert (p < stage.flag_threshold(p, np.ones(5, bool))).sum() == 0  # no miss: flag nothing
    assert (p < stage.flag_threshold(p, np.zeros(5, bool))).all()


# -- the stage ---------------------------------------------------------------------
def test_correct_images_rows_artifacts_and_isolated_failures(ctx, tmp_path):
    from probebench.registry import Registry
    from tests.conftest import builtin_modules

    registry = Registry(builtin_modules())
    specs = [
        ComponentSpec("prober-latent", {"lr": 0.05}),
        ComponentSpec("pixel-prober", {"lr": 0.01}),
        ComponentSpec("monotone-path", {"lr": 0.05}),
    ]
    given = stage.Guide(ctx.prober, threshold=ctx.prober_threshold, level=ctx.prober_hit_level)
    state = stage.setup(specs, registry, ctx, {"generator": TrainedFlow(ctx.generator)}, {"prober": given})
    assert [b.method for b in state.bound] == ["prober-latent", "pixel-prober", "monotone-path"]

    class Broken:
        def correct(self, ctx, images):
            return replace(ProberLatent(lr=0.05).correct(ctx, images), steps=torch.zeros(3))

    state.bound.append(stage.Bound("broken", Broken(), "generator"))
    failures = []
    images, labels = toy.cell()
    rows = stage.correct_images(
        ctx,
        state,
        images,
        labels,
        BOOT,
        out=tmp_path,
        tag="seed0_none-0",
        on_failure=lambda label, exc: failures.append((label, str(exc))),
    )
    table = pd.DataFrame(rows)
    assert set(table["method"]) == {"prober-latent", "pixel-prober", "monotone-path"}
    value = table.set_index(["method", "metric"])["value"]
    assert value["prober-latent", "correction-rate"] == 1.0 and value["prober-latent", "break-rate"] == 0.0
    # threshold 0.5 flags exactly the six misses; all are fixed: accuracy 10/16 -> 16/16
    assert value["prober-latent", "net-accuracy-gain"] == pytest.approx(6 / 16)
    assert failures == [("broken", "returned steps of shape [3], expected [16]")]
    saved = torch.load(tmp_path / "corrections" / "prober-latent_seed0_none-0.pt", weights_only=True)
    assert saved["stop_level"] == pytest.approx(toy.hit_level()) and saved["steps"].shape == (16,)
    changed = saved["index"]
    assert torch.equal(changed, (saved["steps"] > 0).nonzero().squeeze(1)) and 6 <= len(changed) < 16
    again = ProberLatent(lr=0.05).correct(ctx, images)  # the stage hands it the same generator, prober and levels
    assert torch.equal(saved["edited"], again.images[changed])
    path = torch.load(tmp_path / "corrections" / "monotone-path_seed0_none-0.pt", weights_only=True)
    assert path["details.path"].shape == (len(path["index"]), 8, 1, 4, 4)
    assert (tmp_path / "corrections" / "prober-latent_grid.png").stat().st_size > 1000


def test_setup_expands_over_generators_pins_and_calibrates_when_asked(ctx):
    from probebench.registry import Registry
    from tests.conftest import builtin_modules

    registry = Registry(builtin_modules())
    generators = {"glow": TrainedFlow(toy.IdentityFlow()), "realnvp": TrainedFlow(toy.SplitFlow())}
    probers = {"prober": stage.Guide(ctx.prober)}
    specs = [
        ComponentSpec("prober-latent"),
        ComponentSpec("pixel-prober"),
        ComponentSpec("latent-noise", {"generator": "glow"}, "noise-glow"),
    ]
    state = stage.setup(specs, registry, ctx, generators, probers)
    assert [(b.method, b.generator) for b in state.bound] == [
        ("prober-latent@glow", "glow"),
        ("prober-latent@realnvp", "realnvp"),
        ("pixel-prober", None),
        ("noise-glow", "glow"),
    ]
    # no threshold/level given and no validation split: chosen on the training split, where m > 0.55 are the hits
    guide = state.guides[state.guide_label(state.bound[0])]
    assert guide.calibrated_on == "training split" and list(state.guides) == ["prober"]
    assert 0.1 < guide.threshold <= guide.level < 0.9
    with pytest.raises(UserError, match="names generator 'flow'"):
        stage.setup([ComponentSpec("prober-latent", {"generator": "flow"})], registry, ctx, generators, probers)
    with pytest.raises(UserError, match="names prober 'other'; the suite's probers: prober"):
        stage.setup([ComponentSpec("prober-latent", {"prober": "other"})], registry, ctx, generators, probers)

    # a second prober guides the correctors that name it, with its own threshold and stop level
    def shifted(images):
        return (ctx.prober(images) + 0.05).clamp(max=1)

    two = {"main": stage.Guide(ctx.prober), "shifted": stage.Guide(shifted)}
    state = stage.setup(
        [ComponentSpec("prober-latent", {"generator": "glow"}), ComponentSpec("pixel-prober", {"prober": "shifted"})],
        registry,
        ctx,
        generators,
        two,
    )
    assert [b.guide for b in state.bound] == ["main", "shifted"] and list(state.guides) == ["main", "shifted"]
    assert state.guides["shifted"].level == pytest.approx(state.guides["main"].level + 0.05)
    assert set(state.calibration()) == {"main", "shifted", "correctors"}
    with pytest.raises(UserError, match="correctors need a generator and a scorer that can guide them"):
        stage.setup(specs, registry, ctx, {}, probers)


def test_calibration_is_cached_by_the_guide_and_the_images_it_is_chosen_on(ctx, monkeypatch):
    """A keyed guide's threshold and stop level come from the store the second
    time; other validation labels (or an unkeyed guide) calibrate anew."""
    stored: dict[str, dict] = {}

    def artifact(stage_name, parts, build, check=None):
        key = repr((stage_name, parts))
        if key not in stored:
            stored[key] = build()
        return stored[key]

    calls = []
    real = stage.calibrate
    monkeypatch.setattr(stage, "calibrate", lambda *args: calls.append(1) or real(*args))
    ctx = replace(ctx, artifact=artifact)
    first = stage.calibrated(ctx, "prober", stage.Guide(ctx.prober, "key-a"))
    again = stage.calibrated(ctx, "prober", stage.Guide(ctx.prober, "key-a"))
    assert len(calls) == 1 and (again.threshold, again.level) == (first.threshold, first.level)
    stage.calibrated(ctx, "prober", stage.Guide(ctx.prober, "key-b"))
    assert len(calls) == 2
    flipped = replace(ctx, train_labels=(ctx.train_labels + 1) % ctx.num_classes)
    stage.calibrated(flipped, "prober", stage.Guide(ctx.prober, "key-a"))
    assert len(calls) == 3
    stage.calibrated(ctx, "prober", stage.Guide(ctx.prober))  # no key: never cached
    stage.calibrated(ctx, "prober", stage.Guide(ctx.prober))
    assert len(calls) == 5


CORRECTION_SUITE = """
[suite.s]
dataset = "mnist-5k"
classifier = "cnn"
metrics = ["auroc"]
correctors = ["prober-latent"]
"""


def correction_suite(tmp_path, scorers: str, generators: str = '["realnvp"]', correctors: str = ""):
    """A registry.toml with the built-ins and the knn test plugin (tests/knn_guide.py), and one suite."""
    modules = ", ".join(f'"{m}"' for m in [*builtin_modules(), "tests.knn_guide"])
    path = tmp_path / "registry.toml"
    body = CORRECTION_SUITE + f"scorers = {scorers}\ngenerators = {generators}\n"
    if correctors:
        body = body.replace('correctors = ["prober-latent"]', f"correctors = {correctors}")
    path.write_text(f"[plugins]\nbuiltin = [{modules}]\n{body}")
    return path


def test_suites_with_correctors_need_a_generator_and_a_scorer_that_declares_it_can_guide(tmp_path):
    from probebench.registry import Registry
    from probebench.suite import load_config, parse_suite

    def parse(**suite):
        config = load_config(correction_suite(tmp_path, **suite), ["tests.knn_guide"])
        return parse_suite(config, "s", Registry(config.builtin, autoload=False))

    with pytest.raises(
        UserError,
        match=r"^registry.toml: suite 's': correctors need a generator and a prober; the suite lacks 'generators' "
        r"and a scorer that can guide them \(guides_correctors = True, like 'prober'; msp does not declare it\)$",
    ):
        parse(scorers='["msp"]', generators="[]")
    # a scorer whose name starts with "prober" but that does not declare the capability is not silently skipped
    with pytest.raises(UserError, match=r"lacks a scorer that can guide them .*msp, prober-knn do not declare it"):
        parse(scorers='["msp", "prober-knn"]')
    # a third-party scorer that declares it guides correctors, whatever its name
    assert parse(scorers='["msp", "knn-guide"]').correctors[0].name == "prober-latent"
    with pytest.raises(UserError, match=r"names prober 'msp' \(a scorer that cannot guide correctors\).*probers: knn"):
        parse(
            scorers='["msp", { name = "knn-guide", label = "knn" }]',
            correctors='[{ name = "prober-latent", prober = "msp" }]',
        )


def test_probebench_run_says_in_one_line_that_a_prober_knn_cannot_guide(runner, tmp_path):
    from probebench.cli import app

    path = correction_suite(tmp_path, scorers='["msp", "prober-knn"]')
    args = ["--allow-module", "tests.knn_guide", "run", "s", "--registry", str(path), "--out", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "prober-knn do not declare it" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_suite_validation_checks_corrector_names_and_options(tmp_path):
    from probebench.registry import Registry
    from probebench.suite import load_config, parse_suite, validate

    registry = Registry(builtin_modules())
    path = tmp_path / "registry.toml"
    path.write_text(
        '[plugins]\nbuiltin = []\n[suite.s]\ndataset = "mnist-5k"\nclassifier = "cnn"\n'
        'scorers = ["msp", { name = "prober", label = "prober-ref" }]\nmetrics = ["auroc"]\ngenerators = ["glow"]\n'
    )
    suite = parse_suite(load_config(path), "s", registry)
    good = replace(suite, correctors=(ComponentSpec("prober-latent", {"lr": 0.1, "generator": "glow"}),))
    validate(good, registry, "suite 's'")
    with pytest.raises(UserError, match=r"unknown corrector 'prober-latnet' \(did you mean 'prober-latent'"):
        validate(replace(suite, correctors=(ComponentSpec("prober-latnet"),)), registry, "suite 's'")
    with pytest.raises(UserError, match=r"corrector 'prober-latent' has no option 'steps'"):
        validate(replace(suite, correctors=(ComponentSpec("prober-latent", {"steps": 3}),)), registry, "suite 's'")
    validate(replace(suite, correctors=(ComponentSpec("prober-latent", {"prober": "prober-ref"}),)), registry, "s")
    with pytest.raises(UserError, match=r"names prober 'prober-rfe' \(did you mean 'prober-ref'.*probers: prober-ref"):
        validate(
            replace(suite, correctors=(ComponentSpec("prober-latent", {"prober": "prober-rfe"}),)),
            registry,
            "suite 's'",
        )
    validate(replace(suite, correctors=(ComponentSpec("prober-latent", {"flag": "argmax"}),)), registry, "s")
    with pytest.raises(UserError, match=r"suite 's': corrector 'prober-latent': flag must be 'youden' .* got 'max'"):
        validate(replace(suite, correctors=(ComponentSpec("prober-latent", {"flag": "max"}),)), registry, "suite 's'")


def test_a_scorer_that_declares_the_capability_without_p_hit_is_one_line(tmp_path, monkeypatch):
    from probebench.registry import Registry
    from probebench.suite import load_config, parse_suite
    from tests import knn_guide

    monkeypatch.delattr(knn_guide.KnnGuide, "p_hit")
    config = load_config(correction_suite(tmp_path, scorers='["knn-guide"]'), ["tests.knn_guide"])
    with pytest.raises(UserError, match=r"scorer 'knn-guide' declares guides_correctors = True but has no p_hit"):
        parse_suite(config, "s", Registry(config.builtin, autoload=False))


def test_a_run_with_correctors_writes_rows_tensors_and_a_grid(monkeypatch, tiny_registry, tmp_path, one_thread):
    """The whole pipeline on the tiny suite (with an untrained CNN: this tests
    the wiring, not accuracy), a tiny RealNVP, and correctors guided by a
    third-party scorer that declares the capability under a name other than
    ``prober`` (tests/knn_guide.py, registered in-process); the threshold
    comes from a validation split, and a second run takes every correction
    from the cache."""
    from probebench.cache import ArtifactStore
    from probebench.pipeline import run, train
    from probebench.registry import Registry
    from probebench.suite import load_config, parse_suite

    def first_64_test_images(*args, **kwargs):
        splits = real_load(*args, **kwargs)
        return replace(splits, test_images=splits.test_images[:64], test_labels=splits.test_labels[:64])

    def untrained(registry, store, dataset_spec, classifier_spec, splits, seed, device):
        from probebench.pipeline.train import build_model

        assert len(splits.train_labels) + len(splits.val_labels) == 300 and len(splits.val_labels) == 100
        torch.manual_seed(seed)
        return build_model(registry, classifier_spec, 10, (1, 28, 28))[1].eval(), f"untrained-{seed}"

    real_load = run.load_splits
    monkeypatch.setattr(train, "trained_classifier", untrained)
    monkeypatch.setattr(run, "load_splits", first_64_test_images)
    path = tiny_registry(scorers='["msp", { name = "knn-guide", label = "knn" }]')
    path.write_text(path.read_text().replace("builtin = [", 'builtin = ["tests.knn_guide", '))
    config = load_config(path, ["tests.knn_guide"])
    registry = Registry(config.builtin, autoload=False)
    suite = parse_suite(config, "tiny", registry)
    suite = replace(
        suite,
        validation=100,
        generators=(ComponentSpec("realnvp", {"levels": 2, "blocks": 1, "hidden": 8, "epochs": 1, "warmup": 0}),),
        correctors=(
            ComponentSpec("prober-latent", {"lr": 0.05, "max_steps": 5, "threshold": 0.7}),
            ComponentSpec("confidence-ascent", {"target": "runner-up", "eta": 10.0, "max_steps": 5, "flag": "argmax"}),
        ),
    )
    out = tmp_path / "run"
    store = ArtifactStore(tmp_path / "cache")
    outcome = run.run_suite(suite, registry, store, torch.device("cpu"), out)
    assert outcome.failures == []
    table = pd.read_csv(out / "results.csv", keep_default_na=False, na_values=[""])
    correction = table[table["metric"].isin(CORRECTION_METRICS)]
    assert set(correction["method"]) == {"prober-latent", "confidence-ascent"}
    assert len(correction) == 2 * len(CORRECTION_METRICS)
    rates = correction.set_index(["method", "metric"])["value"]
    assert all(
        0 <= rates[m, r] <= 1 for m in ("prober-latent", "confidence-ascent") for r in ("correction-rate", "break-rate")
    )
    assert rates["prober-latent", "images-per-second"] > 0 and rates["prober-latent", "p90-steps"] <= 5
    head = json.loads((out / "run.json").read_text())
    assert head["metrics"]["break-rate"]["higher_is_better"] is False
    assert [c["name"] for c in head["suite"]["correctors"]] == ["prober-latent", "confidence-ascent"]
    saved = torch.load(out / "corrections" / "prober-latent_seed0_none-0.pt", weights_only=True)
    assert saved["steps"].shape == (64,) and saved["edited"].shape == (len(saved["index"]), 1, 28, 28)
    assert saved["calibrated_on"] == "validation split (100 images)"
    # the knn scorer guided the edit: the P(hit) the loop flags by is its p_hit, which equals its scores
    scores = pd.read_csv(out / "scores.csv.gz")
    clean = scores[scores["corruption"] == "none"].sort_values("index")
    assert np.allclose(saved["p_hit"].numpy(), clean["knn"].to_numpy(), atol=1e-5)
    calibration = head["correction"]["0"]
    assert calibration["knn"]["threshold"] == saved["threshold"]
    assert calibration["knn"]["calibrated_on"] == "validation split (100 images)"
    # the stop level and flag threshold each corrector actually used: prober-latent's own threshold 0.7
    # (not the guide's median), and confidence-ascent's argmax flag P(hit) < 0.5
    used = calibration["correctors"]
    assert used["prober-latent"] == {
        "prober": "knn",
        "flag": "youden",
        "flag_threshold": saved["threshold"],
        "stop_level": 0.7,
    }
    assert saved["stop_level"] == 0.7 and calibration["knn"]["stop_level"] != 0.7
    argmax = torch.load(out / "corrections" / "confidence-ascent_seed0_none-0.pt", weights_only=True)
    assert argmax["threshold"] == 0.5 == used["confidence-ascent"]["flag_threshold"] and argmax["flag"] == "argmax"
    assert torch.equal(argmax["flagged"], argmax["p_hit"] < 0.5)
    # each corrector's loop threshold tuned on the validation split; its tuned gain uses it on test
    tuned = calibration["tuned_thresholds"]["prober-latent"]
    gain = (saved["prediction_after"] == saved["labels"]).long() - (
        saved["prediction_before"] == saved["labels"]
    ).long()
    assert rates["prober-latent", "tuned-net-accuracy-gain"] == pytest.approx(
        float(gain[saved["p_hit"] < tuned].sum()) / 64
    )
    assert (out / "corrections" / "confidence-ascent_grid.png").exists()
    # one record per (corrector, test cell) and per (corrector, validation split)
    assert len(list((tmp_path / "cache" / "correction").glob("*.pt"))) == 4

    # resume: a second run edits nothing (a corrector that would run now fails) and writes the same results
    from probebench.plugins.correctors import _engine

    def must_not_run(*args, **kwargs):
        raise AssertionError("the correction should have come from the cache")

    from probebench.pipeline import evaluate

    monkeypatch.setattr(_engine, "prober_latent", must_not_run)
    monkeypatch.setattr(_engine, "confidence_ascent", must_not_run)
    # ... nor recomputes the bootstrap of cached scores
    real_evaluate_cell, real_outcome_rows = evaluate.evaluate_cell, evaluate.outcome_rows
    monkeypatch.setattr(evaluate, "evaluate_cell", must_not_run)
    monkeypatch.setattr(evaluate, "outcome_rows", must_not_run)
    # ... nor runs the prober over the validation split, samples the flow or draws a picture
    from probebench.report import grids

    monkeypatch.setattr(stage, "calibrate", must_not_run)
    monkeypatch.setattr(grids, "image_grid", must_not_run)
    monkeypatch.setattr(grids, "correction_grid", must_not_run)
    again = tmp_path / "again"
    assert run.run_suite(suite, registry, store, torch.device("cpu"), again).failures == []
    assert (again / "results.csv").read_bytes() == (out / "results.csv").read_bytes()
    assert json.loads((again / "run.json").read_text())["correction"] == head["correction"]
    pictures = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    names = {p.name for p in pictures}
    assert {"realnvp-seed0-samples.png", "realnvp-seed0-reconstructions.png", "confidence-ascent_grid.png"} <= names
    assert all((again / p).read_bytes() == (out / p).read_bytes() for p in pictures)
    # other bootstrap settings are another cache entry: the intervals are computed anew
    monkeypatch.setattr(evaluate, "evaluate_cell", real_evaluate_cell)
    monkeypatch.setattr(evaluate, "outcome_rows", real_outcome_rows)
    fewer = replace(suite, bootstrap=replace(suite.bootstrap, resamples=suite.bootstrap.resamples - 10))
    assert run.run_suite(fewer, registry, store, torch.device("cpu"), tmp_path / "fewer").failures == []
    resampled = pd.read_csv(tmp_path / "fewer" / "results.csv").set_index(["method", "metric"])
    first = table.set_index(["method", "metric"])
    assert (resampled["value"].dropna() == first["value"].dropna()).all()
    intervals = ["ci_low", "ci_high"]
    assert not resampled[intervals].fillna(-1).equals(first.loc[resampled.index, intervals].fillna(-1))
    resaved = torch.load(again / "corrections" / "prober-latent_seed0_none-0.pt", weights_only=True)
    assert torch.equal(resaved["edited"], saved["edited"])
    assert (again / "corrections" / "confidence-ascent_grid.png").exists()


def test_decoded_pixels_are_clipped_straight_through_as_the_reference_clips():
    """A latent whose decode leaves [0, 1] still gets the gradient of the unclipped pixels
    (the reference's ``x.data = clip(x.data)``); a plain clamp would give it none."""
    from probebench.plugins.correctors._engine import Flat, Identity, decode_rows

    z = torch.tensor([[-0.5, 0.0, 0.5, 1.0, 1.5]], requires_grad=True)
    x = decode_rows(Identity(), Flat(z.detach()), z)
    assert x.tolist() == [[0.0, 0.0, 0.5, 1.0, 1.0]]
    x.sum().backward()
    assert z.grad.tolist() == [[1.0] * 5]


def test_reference_mnist_mirrors_the_reference_script():
    """The preset is what README and the issue say the reference does: RealNVP, its prober's
    training, argmax flagging, Adam lr 0.1 to P(hit) > 0.92 with a 5000-step cap."""
    from probebench.registry import Registry
    from probebench.suite import load_config, parse_suite
    from tests.conftest import REPO

    config = load_config(REPO / "registry.toml")
    suite = parse_suite(config, "reference-mnist", Registry(config.builtin, autoload=False))
    assert [g.name for g in suite.generators] == ["realnvp"]
    scorers = {spec.label: spec.options for spec in suite.scorers}
    reference = scorers["reference-prober"]
    assert reference["source"] == "train" and reference["layer"] == "fc_layer.4" and reference["outputs"] == "none"
    assert reference["prober_options"] == {"epochs": 2, "patience": 0, "loss_weight": [4, 1], "standardize": False}
    leaky = [label for label, options in scorers.items() if options.get("source") == "reference-add-split"]
    assert leaky and all("LEAKS-TEST" in label for label in leaky)
    loop = {spec.label: spec.options for spec in suite.correctors}["reference-loop"]
    assert loop == {
        "prober": "reference-prober",
        "lr": 0.1,
        "threshold": 0.92,
        "max_steps": 5000,
        "flag": "argmax",
    }
    assert {spec.name for spec in suite.correctors} == {"prober-latent"}


def test_an_argmax_loop_edits_only_what_its_prober_flags_and_keeps_both_denominators(ctx, tmp_path):
    """As the reference's generate_counterfactual.py edits only the images its prober calls a miss
    (argmax): an unflagged image is never handed to the corrector, keeps its prediction with 0
    steps, and a miss left so counts as not corrected over all misses."""
    from probebench.registry import Registry

    registry = Registry(builtin_modules())

    def shifted(images):  # P(hit) + 0.2: the mildest miss (m = 0.53) rises above 0.5
        return (ctx.prober(images) + 0.2).clamp(max=1)

    guides = {
        "shifted": stage.Guide(shifted, "toy-prober", threshold=0.5, level=toy.hit_level()),
        "none-flagged": stage.Guide(lambda images: shifted(images).clamp(min=0.6), "toy-prober-2", 0.5, 0.95),
    }
    specs = [
        ComponentSpec("prober-latent", {"lr": 0.05, "flag": "argmax", "prober": "shifted"}, "argmax"),
        ComponentSpec("prober-latent", {"lr": 0.05, "prober": "shifted"}, "every-image"),  # threshold 0.5 too
        ComponentSpec("prober-latent", {"lr": 0.05, "flag": "argmax", "prober": "none-flagged"}, "nothing"),
    ]
    state = stage.setup(specs, registry, ctx, {"identity": TrainedFlow(ctx.generator, "identity-flow")}, guides)
    assert state.bound[0].key and state.bound[0].key != state.bound[1].key  # not one cached edit for both
    images, labels = toy.cell()
    flagged = shifted(images) < 0.5
    assert flagged.tolist() == [True] * 5 + [False] * 11  # five of the six misses, no hit
    rows = stage.correct_images(ctx, state, images, labels, BOOT, out=tmp_path, tag="seed0_none-0")
    value = pd.DataFrame(rows).set_index(["method", "metric"])["value"]
    assert value["every-image", "correction-rate"] == 1.0 and value["argmax", "correction-rate"] == 5 / 6
    for metric in ("correction-rate-flagged", "net-accuracy-gain", "loop-accuracy", "abstain-coverage"):
        assert value["argmax", metric] == value["every-image", metric], metric
    assert value["argmax", "correction-rate-flagged"] == 1.0 and value["argmax", "break-rate"] == 0.0
    saved = torch.load(tmp_path / "corrections" / "argmax_seed0_none-0.pt", weights_only=True)
    everything = torch.load(tmp_path / "corrections" / "every-image_seed0_none-0.pt", weights_only=True)
    assert torch.equal(saved["flagged"], flagged) and torch.equal(saved["steps"] > 0, flagged)
    assert torch.equal(saved["prediction_after"][~flagged], saved["prediction_before"][~flagged])
    assert (everything["steps"][~flagged] > 0).any()  # the Youden loop's corrector edits the others too
    # the flagged images get the same edits as when every image is edited (an edit is per sample)
    assert torch.allclose(saved["edited"], everything["edited"][flagged[everything["index"]]], atol=1e-6)
    assert saved["details.reached"].shape == (16,) and not saved["details.reached"][~flagged].any()
    # nothing flagged: the corrector is not called, nothing changes, the flagged rates are undefined
    assert value["nothing", "correction-rate"] == 0.0 and value["nothing", "net-accuracy-gain"] == 0.0
    assert np.isnan(value["nothing", "correction-rate-flagged"]) and np.isnan(value["nothing", "images-per-second"])
    nothing = torch.load(tmp_path / "corrections" / "nothing_seed0_none-0.pt", weights_only=True)
    assert len(nothing["index"]) == 0 and not nothing["steps"].any()
