"""Adversarial test cells: the ``attack`` kind, the ``pgd`` attack (held to
its definition), and suites with ``attacks`` scored like any other cell."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from probebench.cli import app
from probebench.registry import Registry
from probebench.testing import check_attack, tiny_data, tiny_model, train_tiny

ATTACK_SUITE = """
[suite.tiny-pgd]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 4, width = 8 }
scorers = ["msp", "entropy"]
metrics = ["accuracy", "auroc"]
attacks = [{ name = "pgd", severities = [1, 5], steps = 3 }]
seeds = [0]
bootstrap = { resamples = 0 }
"""


def pgd_by_definition(model, images, labels, epsilon, steps, alpha, start):
    """L-inf PGD written from Madry et al. (2018): start at ``start`` (a point of
    the epsilon ball), then per image a signed gradient step on its own
    cross-entropy, projected onto the ball and [0, 1]; one image at a time."""
    out = []
    for x, y, x0 in zip(images, labels, start, strict=True):
        adv = x0.clone()
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(adv[None]), y[None], reduction="sum")
            (grad,) = torch.autograd.grad(loss, adv)
            adv = adv.detach() + alpha * torch.sign(grad)
            adv = torch.minimum(torch.maximum(adv, x - epsilon), x + epsilon).clamp(0, 1)
        out.append(adv)
    return torch.stack(out)


@pytest.fixture(scope="module")
def trained():
    images, labels = tiny_data(64)
    return train_tiny(tiny_model(), images, labels), images, labels


def test_pgd_equals_its_definition_and_stays_in_the_epsilon_ball(trained):
    from probebench.plugins.attacks.pgd import PGD

    model, images, labels = trained
    attack = PGD(epsilons=[0.01, 0.02, 0.05, 0.1, 0.2], steps=4, step_size=0.3)
    adv = attack(model, images, labels, 3, torch.Generator().manual_seed(5))
    # the documented random start: x + epsilon * (2u - 1), u uniform from the cell's generator, in [0, 1]
    u = torch.rand(images.shape, generator=torch.Generator().manual_seed(5))
    start = (images + 0.05 * (2 * u - 1)).clamp(0, 1)
    expected = pgd_by_definition(model, images, labels, 0.05, 4, 0.3 * 0.05, start)
    assert torch.allclose(adv, expected, atol=1e-6)
    assert (adv - images).abs().max() <= 0.05 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert all(p.grad is None for p in model.parameters())
    without_start = PGD(epsilons=[0.01, 0.02, 0.05, 0.1, 0.2], steps=4, step_size=0.3, random_start=False)
    adv = without_start(model, images, labels, 3, torch.Generator().manual_seed(5))
    assert torch.allclose(adv, pgd_by_definition(model, images, labels, 0.05, 4, 0.3 * 0.05, images), atol=1e-6)


def test_pgd_accuracy_falls_as_the_budget_grows(trained):
    from probebench.plugins.attacks.pgd import PGD

    model, images, labels = trained
    attack = PGD(epsilons=[0.0, 0.02, 0.05, 0.1, 0.3], steps=5)
    with torch.no_grad():
        clean = (model(images).argmax(1) == labels).float().mean().item()
    accuracy = []
    for severity in range(1, 6):
        adv = attack(model, images, labels, severity, torch.Generator().manual_seed(0))
        with torch.no_grad():
            accuracy.append((model(adv).argmax(1) == labels).float().mean().item())
    assert accuracy[0] == clean  # a zero budget leaves every image as it was
    assert all(later <= earlier for earlier, later in zip(accuracy, accuracy[1:], strict=False))
    assert accuracy[4] < clean / 2, accuracy


def test_pgd_keeps_the_attack_contract():
    registry = Registry(["probebench.plugins.attacks.pgd"], autoload=False)
    outputs = check_attack(registry.create("attack", "pgd", {"steps": 3}))
    assert set(outputs) == {1, 2, 3, 4, 5}


def test_pgd_rejects_a_budget_list_of_the_wrong_length():
    from probebench.errors import UserError
    from probebench.plugins.attacks.pgd import PGD

    with pytest.raises(UserError, match="five numbers in \\[0, 1\\]"):
        PGD(epsilons=[0.1, 0.2])


def test_a_suite_with_attacks_scores_each_severity_and_caches_the_attacked_images(runner, tiny_registry, tmp_path):
    registry = tiny_registry(ATTACK_SUITE)
    out = tmp_path / "runs" / "pgd"
    result = runner.invoke(app, ["run", "tiny-pgd", "--registry", str(registry), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    accuracy = table[(table["metric"] == "accuracy")].groupby(["corruption", "severity"])["value"].first()
    assert set(accuracy.index) == {("none", 0), ("pgd", 1), ("pgd", 5)}
    assert accuracy[("pgd", 5)] <= accuracy[("pgd", 1)] < accuracy[("none", 0)]
    assert accuracy[("pgd", 5)] < accuracy[("none", 0)] / 2
    auroc = table[(table["metric"] == "auroc") & (table["corruption"] == "pgd")]
    assert sorted(auroc["method"].unique()) == ["entropy", "msp"] and len(auroc) == 4
    assert auroc["value"].between(0, 1).all()

    again = tmp_path / "runs" / "pgd-again"
    result = runner.invoke(app, ["run", "tiny-pgd", "--registry", str(registry), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert "attack pgd" not in result.output  # the attacked images come from the cache
    assert pd.read_csv(again / "results.csv", keep_default_na=False).equals(table)


@pytest.mark.parametrize(
    "entry, message",
    [
        ('{ name = "pgd", severities = [0, 2] }', "attack 'pgd' severities must be a list of 1..5, got [0, 2]"),
        ('{ name = "pgdd" }', "unknown attack 'pgdd' (did you mean 'pgd'"),
        ('{ name = "pgd", steps = 0 }', "steps"),
    ],
)
def test_a_bad_attack_entry_is_one_line_and_exit_2(runner, tiny_registry, tmp_path, entry, message):
    registry = tiny_registry(ATTACK_SUITE.replace('{ name = "pgd", severities = [1, 5], steps = 3 }', entry))
    result = runner.invoke(app, ["run", "tiny-pgd", "--registry", str(registry), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
