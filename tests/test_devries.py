"""DeVries & Taylor's confidence branch: a classifier with an extra output and
a loss of its own, trained through the ``SelfTraining`` capability."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from probebench.cli import app
from probebench.errors import UserError
from probebench.kinds import trains_itself
from probebench.plugins.classifiers._devries_net import DeVriesNet, devries_loss, fit
from probebench.plugins.classifiers.devries import CNNDeVries, DeVriesScorer
from probebench.testing import tiny_context


def test_the_loss_is_the_papers_interpolated_nll_plus_the_confidence_penalty():
    generator = torch.Generator().manual_seed(0)
    logits, branch = torch.randn(6, 4, generator=generator), torch.randn(6, generator=generator)
    labels, hints = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([True, False, True, True, False, True])
    loss, penalty = devries_loss(logits, branch, labels, hints, lmbda=0.3)
    c = torch.where(hints, torch.sigmoid(branch), torch.ones(6))
    p_true = logits.softmax(dim=1)[torch.arange(6), labels]
    expected_nll = -(c * p_true + (1 - c)).log().mean()  # p'_y = c p_y + (1 - c) * 1
    expected_penalty = -torch.sigmoid(branch).log().mean()
    assert penalty.item() == pytest.approx(expected_penalty.item(), rel=1e-6)
    assert loss.item() == pytest.approx((expected_nll + 0.3 * expected_penalty).item(), rel=1e-6)


def test_the_branch_learns_lower_confidence_on_the_images_it_gets_wrong():
    from probebench.plugins.datasets.mnist5k import Mnist5k

    images, labels = Mnist5k(limit=400).load("train", None)
    torch.manual_seed(0)
    model = DeVriesNet(10, (1, 28, 28), width=8)
    recipe = dict(epochs=3, lr=2e-3, batch_size=64, weight_decay=0.0, lmbda=1.0, budget=0.3, hint_rate=0.5)
    history = fit(model, images, labels, recipe, seed=0, device="cpu", advance=lambda: None)
    assert set(history) == {"loss", "confidence_loss", "lmbda"} and len(history["loss"]) == 3
    assert history["loss"][-1] < history["loss"][0] and not model.training
    with torch.no_grad():
        logits, branch = model.logits_and_confidence(images)
    hit = logits.argmax(dim=1) == labels
    assert 0 < int((~hit).sum()) < len(hit)
    assert torch.sigmoid(branch[hit]).mean() > torch.sigmoid(branch[~hit]).mean()
    with torch.no_grad():  # forward gives the class logits only (same batch: same float bits)
        assert torch.equal(model(images[:5]), model.logits_and_confidence(images[:5])[0])


def test_the_scorer_reads_the_branch_and_refuses_a_classifier_without_one():
    assert trains_itself(CNNDeVries) and trains_itself(CNNDeVries())
    with pytest.raises(UserError, match="use classifier 'cnn-devries'"):
        DeVriesScorer().prepare(tiny_context())


def test_a_run_trains_cnn_devries_with_its_own_loss_and_scores_its_confidence(runner, tiny_registry, tmp_path):
    registry = tiny_registry(
        """
        [suite.tiny-devries]
        dataset = { name = "mnist-5k", limit = 300 }
        classifier = { name = "cnn-devries", epochs = 1, width = 8 }
        scorers = ["msp", "devries"]
        metrics = ["accuracy", "auroc"]
        seeds = [0]
        bootstrap = { resamples = 20 }
        """
    )
    out = tmp_path / "run"
    args = ["run", "tiny-devries", "--registry", str(registry), "--out", str(out), "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert set(table["method"]) == {"-", "msp", "devries"}
    scores = pd.read_csv(out / "scores.csv.gz")
    assert scores["devries"].between(0, 1).all() and scores["devries"].nunique() > 1
    assert (out / "cnn-devries-seed0-losses.png").is_file()
