"""New-class shift: ``new_classes`` holds classes out of training; their test
images form a cell of their own (always misses), reported as the new-class
study with ``new-class-auroc`` (hits against unseen-class images)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from probebench.cli import app
from probebench.errors import UserError
from probebench.pipeline.cells import study
from probebench.pipeline.data import load_splits
from probebench.registry import Registry
from probebench.results import config_hash
from probebench.suite import ComponentSpec, load_config, parse_suite
from tests.conftest import builtin_modules

SMALL = ComponentSpec("mnist-5k", {"limit": 400})


@pytest.fixture(scope="module")
def registry():
    return Registry(builtin_modules(), autoload=False)


def test_held_out_classes_leave_every_training_split_and_enter_the_fingerprint(registry):
    plain = load_splits(registry, SMALL, None, validation=40, pool=30)
    held = load_splits(registry, SMALL, None, validation=40, pool=30, new_classes=(8, 9))
    for labels in (held.train_labels, held.val_labels, held.pool_labels, held.test_labels):
        assert labels is not None and not torch.isin(labels, torch.tensor([8, 9])).any()
    assert held.new_class_labels is not None and held.new_class_images is not None
    unseen = torch.isin(plain.test_labels, torch.tensor([8, 9]))
    assert torch.equal(held.new_class_images, plain.test_images[unseen])
    assert torch.equal(held.test_images, plain.test_images[~unseen])
    assert held.fingerprint != plain.fingerprint and held.data["new_classes"] == [8, 9]
    with pytest.raises(UserError, match=r"has classes 0\.\.9; hold out some of them"):
        load_splits(registry, SMALL, None, new_classes=(10,))


def test_bad_new_classes_are_one_line_errors_and_other_suites_keep_their_config_hash(tmp_path):
    path = tmp_path / "registry.toml"
    base = 'dataset = "mnist-5k"\nclassifier = "cnn"\nscorers = ["msp"]\nmetrics = ["auroc"]\n'
    path.write_text(
        f"[suite.plain]\n{base}\n[suite.bad]\n{base}new_classes = [8, 8]\n"
        f'[suite.mixed]\n{base}new_classes = [9]\ncorrectors = ["prober-latent"]\n'
    )
    config = load_config(path)
    with pytest.raises(UserError, match=r"'new_classes' must be distinct class numbers \(e\.g\. \[8, 9\]\)"):
        parse_suite(config, "bad")
    with pytest.raises(UserError, match="cannot be combined with correctors"):
        parse_suite(config, "mixed")
    plain = parse_suite(config, "plain").as_dict()
    assert config_hash(plain) == config_hash({k: v for k, v in plain.items() if k != "new_classes"})
    assert config_hash({**plain, "new_classes": [8, 9]}) != config_hash(plain)
    assert [study(c) for c in ("none", "noise", "new-class")] == ["iid", "corruption", "new-class"]


def test_a_run_reports_the_new_class_study_apart_and_its_auroc_traces_to_the_scores(runner, tiny_registry, tmp_path):
    registry = tiny_registry(
        """
        [suite.tiny-newclass]
        dataset = { name = "mnist-5k", limit = 300 }
        classifier = { name = "cnn", epochs = 1, width = 8 }
        new_classes = [8, 9]
        scorers = ["msp", { name = "knn", k = 5 }]
        metrics = ["accuracy", "auroc", "augrc"]
        seeds = [0]
        bootstrap = { resamples = 30 }
        """
    )
    out = tmp_path / "run"
    args = ["run", "tiny-newclass", "--registry", str(registry), "--out", str(out), "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert set(table["corruption"]) == {"none", "new-class"}
    assert set(table.loc[table["metric"] == "new-class-auroc", "corruption"]) == {"new-class"}
    scores = pd.read_csv(out / "scores.csv.gz")
    clean, cell = scores[scores["corruption"] == "none"], scores[scores["corruption"] == "new-class"]
    assert not clean["label"].isin([8, 9]).any()
    unseen = cell["label"].isin([8, 9]).to_numpy()
    assert unseen.sum() == len(cell) - len(clean) > 0 and (cell["hit"][unseen] == 0).all()  # always misses
    hit = cell["hit"].to_numpy() == 1
    keep = hit | unseen
    for method in ("msp", "knn"):
        row = table[(table["metric"] == "new-class-auroc") & (table["method"] == method)].iloc[0]
        assert row["value"] == pytest.approx(roc_auc_score(hit[keep], cell[method].to_numpy()[keep]), rel=1e-5)
        assert row["n"] == keep.sum() and row["ci_low"] <= row["value"] <= row["ci_high"]
    head = json.loads((out / "run.json").read_text())
    assert head["data"]["new_classes"] == [8, 9] and head["metrics"]["new-class-auroc"]["higher_is_better"]

    from probebench.cli.publish import suite_markdown
    from probebench.report.ties import Replicates, Ties

    # ties from the run's replicates alone: no metric plugin to recompute anything with
    ties = Ties(0.05, Replicates({out.name: out}, {out.name: head}, lambda name: None))
    text = suite_markdown(head["suite"], head["config_hash"], [out], ties)
    titles = [line for line in text.splitlines() if line.startswith("**")]
    assert titles[0] == "**iid study: Clean test data**"
    assert "**new-class study: clean test data and unseen-class images**" in titles
    assert titles[-2] == "**new-class study: hits against unseen-class images (new-class-auroc)**"
    assert "classes 8, 9 held out" in text
    unseen_note = text.split("(new-class-auroc)**")[1].split("**runs**")[0]
    assert "paired bootstrap over the same 30 test resamples" in unseen_note  # its rows keep their replicates
    assert "interval overlaps" not in unseen_note
    iid_table = text.split("**iid study: Clean test data**")[1].split("**")[0]
    assert "new-class-auroc" not in iid_table and np.isfinite(table["value"].astype(float)).all()
