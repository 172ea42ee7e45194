"""The cf-gan classifier (a GAN discriminator with a fake class), its
self-training capability, the p-fake scorer, on tiny data."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from probebench.cli import app
from probebench.errors import UserError
from probebench.kinds import trains_itself
from probebench.testing import tiny_data

CFGAN_SUITE = """
[suite.tiny-cfgan]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cf-gan", epochs = 1, warmup_epochs = 0, width = 8, unet_width = 4 }
scorers = ["msp", "p-fake", { name = "prober", source = "train", min_misses = 2, prober_options = { epochs = 2 } }]
metrics = ["accuracy", "auroc"]
correctors = ["cf-gan"]
attacks = [{ name = "pgd", severities = [2], steps = 2 }]
seeds = [0]
bootstrap = { resamples = 0 }
"""


def _fit(seed: int = 0):
    from probebench.plugins.classifiers.cfgan import CFGAN

    component = CFGAN(epochs=2, warmup_epochs=1, batch_size=16, width=4, unet_width=4)
    images, labels = tiny_data(48, shape=(1, 12, 12))  # 3 classes
    torch.manual_seed(seed)
    model = component.build(3, (1, 12, 12))
    history = component.fit(model, images, labels, seed, "cpu", "test")
    return component, model, history, images


def test_cfgan_gives_class_logits_a_fake_output_and_counterfactuals():
    component, model, history, images = _fit()
    assert trains_itself(component)
    assert set(history) == {"classification", "fake", "target", "realness", "cycle", "identity", "sparsity"}
    assert all(len(curve) == 2 for curve in history.values())
    assert all(math.isnan(curve[0]) for name, curve in history.items() if name != "classification")  # warm-up
    assert all(math.isfinite(value) for curve in history.values() for value in curve[1:])
    with torch.no_grad():
        logits, full = model(images), model.discriminate(images)
        p_fake = model.p_fake(images)
        made = model.counterfactual(images, torch.zeros(len(images), dtype=torch.long))
    assert logits.shape == (48, 3) and full.shape == (48, 4)
    assert torch.equal(logits, full[:, :3])  # the pipeline sees the C class logits of D
    assert ((p_fake >= 0) & (p_fake <= 1)).all()
    assert made.shape == images.shape and made.min() >= 0 and made.max() <= 1
    assert model.get_submodule("fc_layer.4") is not None  # the cnn's layer names, for probers


def test_cfgan_training_is_deterministic_given_the_seed():
    _, first, _, _ = _fit(seed=3)
    _, second, _, _ = _fit(seed=3)
    _, other, _, _ = _fit(seed=4)
    a, b, c = (torch.cat([p.flatten() for p in m.parameters()]) for m in (first, second, other))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_cfgan_run_scores_p_fake_and_saves_loss_curves_and_counterfactuals(runner, tiny_registry, tmp_path):
    registry = tiny_registry(CFGAN_SUITE)
    out = tmp_path / "runs" / "cfgan"
    result = runner.invoke(app, ["run", "tiny-cfgan", "--registry", str(registry), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    clean = table[table["corruption"] == "none"]
    auroc = clean[clean["metric"] == "auroc"].set_index("method")["value"]
    assert set(auroc.index) == {"msp", "p-fake", "prober"}
    assert 0 <= auroc["p-fake"] <= 1
    attacked = table[(table["corruption"] == "pgd") & (table["metric"] == "auroc")]
    assert set(attacked["method"]) == {"msp", "p-fake", "prober"}  # p-fake scores the attacked images too
    rates = clean[clean["method"] == "cf-gan"].set_index("metric")["value"]
    assert {"correction-rate", "break-rate", "net-accuracy-gain"} <= set(rates.index)
    assert 0 <= rates["correction-rate"] <= 1 and 0 <= rates["break-rate"] <= 1
    assert (out / "cf-gan-seed0-losses.png").is_file()
    assert (out / "cf-gan-seed0-counterfactuals.png").is_file()
    assert (out / "cf-gan-seed0-saliency.png").is_file()
    scores = pd.read_csv(out / "scores.csv.gz", keep_default_na=False)
    assert scores["p-fake"].between(0, 1).all() and scores["p-fake"].nunique() > 1

    again = tmp_path / "runs" / "cfgan-again"  # from the cache: same scores, figures drawn again
    result = runner.invoke(app, ["run", "tiny-cfgan", "--registry", str(registry), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert "train cf-gan" not in result.output
    assert pd.read_csv(again / "scores.csv.gz")["p-fake"].equals(scores["p-fake"])
    assert (again / "cf-gan-seed0-counterfactuals.png").is_file()


def test_p_fake_on_another_classifier_fails_in_one_line_naming_cf_gan(runner, tiny_registry, tmp_path):
    registry = tiny_registry(scorers='["msp", "p-fake"]')
    out = tmp_path / "runs" / "cnn"
    result = runner.invoke(app, ["run", "tiny", "--registry", str(registry), "--out", str(out)])
    lines = [line for line in result.output.splitlines() if "p-fake" in line and "cf-gan" in line]
    assert lines, result.output
    assert "Traceback" not in result.output


def test_the_cf_gan_corrector_returns_the_counterfactual_toward_the_runner_up_class():
    from probebench.plugins.correctors.cfgan import CFGANCorrector
    from probebench.testing import tiny_context

    _, model, _, images = _fit()
    ctx = SimpleNamespace(classifier=model, batch_size=16, device="cpu")
    correction = CFGANCorrector().correct(ctx, images)
    with torch.no_grad():
        runner_up = model(images).argsort(dim=1, descending=True)[:, 1]
        expected = model.counterfactual(images, runner_up)
    assert torch.allclose(correction.images, expected, atol=1e-6)
    assert (correction.steps == 1).all()

    cnn_ctx = tiny_context()
    with pytest.raises(UserError, match="corrector cf-gan needs the 'cf-gan' classifier"):
        CFGANCorrector().correct(cnn_ctx, images[:2])


def test_the_saliency_grid_shows_each_images_change_under_its_counterfactuals(tmp_path):
    from PIL import Image

    component, model, history, images = _fit()
    labels = torch.arange(len(images)) % 3
    component.save_figures(model, history, images, labels, tmp_path, "cf")
    picture = np.asarray(Image.open(tmp_path / "cf-saliency.png"), dtype=np.float32) / 255
    canvas = torch.from_numpy(picture)[::2, ::2]  # undo the 2x zoom

    def tile(row: int, column: int) -> torch.Tensor:  # 12x12 tiles, 2 pixels apart
        top, left = 2 + row * 14, 2 + column * 14
        return canvas[top : top + 12, left : left + 12]

    x = images[torch.nonzero(labels == 1).flatten()[0]][None]  # row 2: the first image of class 1
    for target in range(3):
        with torch.no_grad():
            change = (x - model.counterfactual(x, torch.tensor([target]))).abs()[0, 0]
        assert torch.allclose(tile(2, 1 + target), change / change.max(), atol=1 / 255 + 1e-6)
    assert torch.allclose(tile(2, 0), x[0, 0], atol=1 / 255 + 1e-6)  # the image itself comes first


def test_a_warm_up_as_long_as_the_training_is_a_one_line_error():
    from probebench.plugins.classifiers.cfgan import CFGAN

    with pytest.raises(UserError, match=r"warmup_epochs must lie in \[0, epochs\) = \[0, 2\), got 2"):
        CFGAN(epochs=2, warmup_epochs=2)


@pytest.mark.parametrize("edit", ["residual", "masked"])
@pytest.mark.parametrize("upsample", ["nearest", "transpose"])
def test_the_generator_starts_as_the_identity_and_its_clamp_passes_gradients_at_the_bounds(edit, upsample):
    from probebench.plugins.classifiers._cfgan_net import clamp_straight_through
    from probebench.plugins.classifiers.cfgan import CFGAN

    images, _ = tiny_data(8, shape=(1, 12, 12))
    model = CFGAN(width=4, unet_width=4, edit=edit, upsample=upsample).build(3, (1, 12, 12))
    with torch.no_grad():
        assert torch.equal(model.counterfactual(images, torch.zeros(8, dtype=torch.long)), images)
    edit_values = torch.tensor([-0.5, 0.5, 1.5], requires_grad=True)
    clamped = clamp_straight_through(edit_values)
    clamped.sum().backward()
    assert clamped.tolist() == [0.0, 0.5, 1.0]
    assert edit_values.grad.tolist() == [1.0, 1.0, 1.0]  # torch.clamp gives 0 at the first and last


def test_the_masked_edit_keeps_x_where_the_mask_is_closed_and_edits_where_it_is_open():
    from probebench.plugins.classifiers.cfgan import CFGAN

    images, _ = tiny_data(8, shape=(1, 12, 12))
    model = CFGAN(width=4, unet_width=4, edit="masked").build(3, (1, 12, 12))
    target = torch.zeros(8, dtype=torch.long)
    with torch.no_grad():
        model.generator.out.bias.copy_(torch.tensor([1.0, -40.0]))  # Δ = 1 everywhere, mask logit -40: closed
        closed, mask = model.generator.edit_and_mask(images, target)
        assert torch.allclose(closed, images, atol=1e-6) and mask.max() < 1e-15
        model.generator.out.bias.copy_(torch.tensor([1.0, 40.0]))  # mask open: x + 2 tanh(1), clamped
        opened, mask = model.generator.edit_and_mask(images, target)
    assert torch.allclose(mask, torch.ones_like(mask))
    assert torch.allclose(opened, (images + 2 * math.tanh(1.0)).clamp(0, 1))


def only_class_loss(**options):
    """A tiny cf-gan whose G is pulled away from x by the class loss alone (no cycle or identity term unless ``options`` set them)."""
    from probebench.plugins.classifiers.cfgan import CFGAN

    defaults = {"cycle_weight": 0.0, "identity_weight": 0.0}
    return CFGAN(
        epochs=3,
        warmup_epochs=1,
        batch_size=16,
        lr=1e-2,
        width=4,
        unet_width=4,
        class_weight=10.0,
        **(defaults | options),
    )


def test_the_sparsity_loss_is_the_mean_edit_and_a_large_weight_keeps_g_nearer_x():
    from probebench.plugins.classifiers._cfgan_net import distance

    x, made = torch.zeros(2, 1, 2, 2), torch.tensor([0.0, 0.5, 1.0, 0.5]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    assert distance(made, x).item() == pytest.approx(0.5)

    images, labels = tiny_data(48, shape=(1, 12, 12))
    edits = []
    for weight in (0.0, 10.0):  # only the class loss pulls G away from x: it alone makes a large edit
        component = only_class_loss(sparsity_weight=weight)
        torch.manual_seed(0)
        model = component.build(3, (1, 12, 12))
        history = component.fit(model, images, labels, 0, "cpu", "test")
        assert math.isfinite(history["sparsity"][2])
        with torch.no_grad():
            made = model.counterfactual(images, (labels + 1) % 3)
        edits.append(distance(made, images).item())
    assert edits[0] > 0.1 and edits[1] < edits[0] / 10


def test_the_mask_loss_closes_the_mask_of_a_masked_edit():

    images, labels = tiny_data(48, shape=(1, 12, 12))
    masks = []
    for weight in (0.0, 10.0):
        component = only_class_loss(
            sparsity_weight=0.0,
            edit="masked",
            mask_weight=weight,
        )
        torch.manual_seed(0)
        model = component.build(3, (1, 12, 12))
        history = component.fit(model, images, labels, 0, "cpu", "test")
        assert math.isfinite(history["mask"][2])  # recorded with edit = "masked" only
        with torch.no_grad():
            masks.append(model.generator.edit_and_mask(images, (labels + 1) % 3)[1].mean().item())
    assert masks[1] < masks[0] / 2


def test_g_sees_the_mean_training_image_of_the_target_class_only_with_prototype():
    from probebench.plugins.classifiers.cfgan import CFGAN

    component = CFGAN(epochs=2, warmup_epochs=1, batch_size=16, width=4, unet_width=4, prototype=True)
    images, labels = tiny_data(48, shape=(1, 12, 12))
    torch.manual_seed(0)
    model = component.build(3, (1, 12, 12))
    component.fit(model, images, labels, 0, "cpu", "test")
    prototypes = model.generator.prototypes
    for c in range(3):
        assert torch.allclose(prototypes[c], images[labels == c].mean(dim=0))
    x, target = images[:4], torch.ones(4, dtype=torch.long)
    with torch.no_grad():
        before = model.counterfactual(x, target)
        prototypes[1] = 1 - prototypes[1]
        after = model.counterfactual(x, target)
    assert not torch.equal(before, after)
    assert "generator.prototypes" in model.state_dict()  # saved with the cached model

    _, plain, _, _ = _fit()  # the default: no prototype channel, so the class means change nothing
    with torch.no_grad():
        before = plain.counterfactual(x, target)
        plain.generator.prototypes[1] = 1 - plain.generator.prototypes[1]
        assert torch.equal(before, plain.counterfactual(x, target))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"upsample": "bilinear"}, "upsample must be one of nearest, transpose, got 'bilinear'"),
        ({"edit": "paint"}, "edit must be one of residual, masked, got 'paint'"),
        ({"mask_weight": 1.0}, "mask_weight needs edit = 'masked'"),
        ({"sparsity_weight": -1.0}, "sparsity_weight and mask_weight not negative"),
        ({"prototype": "yes"}, "prototype must be true or false, got 'yes'"),
        ({"penalty_ramp": -1}, "penalty_ramp must be a whole number of G steps >= 0, got -1"),
        ({"penalty_ramp": 2.5}, "penalty_ramp must be a whole number of G steps >= 0, got 2.5"),
        ({"penalty_beta": 1.5}, r"penalty_beta must lie in \[0, 1\) \(0: plain L1\), got 1.5"),
        ({"penalty_beta": -0.1}, r"penalty_beta must lie in \[0, 1\)"),
    ],
)
def test_bad_generator_options_are_one_line_errors(options, message):
    from probebench.plugins.classifiers.cfgan import CFGAN

    with pytest.raises(UserError, match=message) as error:
        CFGAN(**options)
    assert "\n" not in str(error.value)


def test_source_retrieval_is_one_for_an_editing_g_and_chance_for_a_template():
    from probebench.plugins.classifiers._cfgan_checks import source_retrieval_rate

    sources = torch.rand(20, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    assert source_retrieval_rate(sources + 0.01, sources) == 1.0
    template = torch.full_like(sources, 0.5)  # the same picture whatever the source
    assert source_retrieval_rate(template, sources) == pytest.approx(1 / 20)


def test_deleting_the_top_pixels_replaces_exactly_the_k_most_salient():
    from probebench.plugins.classifiers._cfgan_checks import delete_top_pixels

    images = torch.ones(2, 1, 3, 3)
    saliency = torch.arange(18, dtype=torch.float).view(2, 1, 3, 3)
    saliency[1] = saliency[1].flip(-1)
    deleted = delete_top_pixels(images, saliency, 2, torch.zeros_like(images))
    assert deleted[0, 0].flatten().tolist() == [1, 1, 1, 1, 1, 1, 1, 0, 0]
    assert deleted[1, 0].flatten().tolist() == [1, 1, 1, 1, 1, 1, 0, 0, 1]


@pytest.mark.parametrize("source", ["frozen", "discriminator"])
def test_both_class_sources_train_and_another_is_a_one_line_error(source):
    from probebench.plugins.classifiers.cfgan import CFGAN

    component = CFGAN(epochs=2, warmup_epochs=1, batch_size=16, width=4, unet_width=4, class_source=source)
    images, labels = tiny_data(48, shape=(1, 12, 12))
    model = component.build(3, (1, 12, 12))
    history = component.fit(model, images, labels, 0, "cpu", "test")
    assert math.isfinite(history["target"][1])
    with pytest.raises(UserError, match="class_source must be one of frozen, discriminator, got 'judge'"):
        CFGAN(class_source="judge")


def test_the_generator_options_enter_the_cf_gan_cache_key():
    from probebench.pipeline.train import classifier_key
    from probebench.registry import Registry
    from probebench.suite import ComponentSpec, load_config

    registry = Registry(load_config().builtin)
    dataset = ComponentSpec("mnist-5k")
    keys = {
        classifier_key(registry, dataset, ComponentSpec("cf-gan", options), 0, data="d")
        for options in (
            {},
            {"sparsity_weight": 1.0},
            {"edit": "masked"},
            {"upsample": "transpose"},
            {"prototype": True},
            {"penalty_ramp": 125},
            {"penalty_beta": 0.05},
        )
    }
    assert len(keys) == 7


def test_the_penalty_ramp_is_zero_at_the_first_g_step_and_full_after_k():
    from probebench.plugins.classifiers._cfgan_net import penalty_scale

    assert [penalty_scale(step, 4) for step in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert penalty_scale(0, 0) == 1.0  # no ramp: full weight from the first step


def test_the_penalties_do_not_hold_g_while_the_ramp_is_at_its_start():
    """Cycle, identity and sparsity weighted 100 keep G near x without a ramp;
    with a ramp far longer than the training they act as if weighted 0."""
    images, labels = tiny_data(48, shape=(1, 12, 12))
    edits = {}
    for name, options in {
        "none": {"sparsity_weight": 0.0},
        "held": {"sparsity_weight": 100.0, "cycle_weight": 100.0, "identity_weight": 100.0},
        "ramped": {"sparsity_weight": 100.0, "cycle_weight": 100.0, "identity_weight": 100.0, "penalty_ramp": 10**6},
    }.items():
        component = only_class_loss(**options)
        torch.manual_seed(0)
        model = component.build(3, (1, 12, 12))
        component.fit(model, images, labels, 0, "cpu", "test")
        with torch.no_grad():
            edits[name] = (model.counterfactual(images, (labels + 1) % 3) - images).abs().mean().item()
    assert edits["none"] > 0.1 and edits["held"] < edits["none"] / 10
    assert edits["ramped"] == pytest.approx(edits["none"], rel=0.05)


def test_a_smooth_penalty_lets_g_leave_the_identity_where_plain_l1_holds_it():
    images, labels = tiny_data(48, shape=(1, 12, 12))
    edits = []
    for beta in (0.0, 0.05):
        component = only_class_loss(sparsity_weight=10.0, penalty_beta=beta)
        torch.manual_seed(0)
        model = component.build(3, (1, 12, 12))
        component.fit(model, images, labels, 0, "cpu", "test")
        with torch.no_grad():
            edits.append((model.counterfactual(images, (labels + 1) % 3) - images).abs().mean().item())
    assert edits[1] > 3 * edits[0]


def test_the_smooth_penalty_has_no_pull_at_no_change_and_is_l1_beyond_beta():
    from probebench.plugins.classifiers._cfgan_net import distance

    x = torch.zeros(1, 1, 2, 2)
    for d, l1_pull, smooth_pull in ((1e-4, 1.0, 1e-4 / 0.05), (0.3, 1.0, 1.0)):
        pulls = []
        for beta in (0.0, 0.05):
            made = (x + d).requires_grad_(True)
            distance(made, x, beta).backward()
            pulls.append(made.grad.abs().sum().item())  # gradient of the mean over the 4 pixels, summed
        assert pulls == pytest.approx([l1_pull, smooth_pull], rel=1e-4)
    assert distance(x + 0.3, x, 0.05).item() == pytest.approx(0.3 - 0.025)  # L1 less beta / 2 beyond beta
    assert distance(x + 0.01, x, 0.05).item() == pytest.approx(0.01**2 / 0.1)  # d^2 / 2 beta within it
