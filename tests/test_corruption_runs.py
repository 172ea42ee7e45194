"""Suites with corruptions and real data, end to end through the CLI; timm; the grid."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from probebench.cli import app
from tests.test_datasets import write_cifar, write_cifar_c

CURE_SUITE = """
[suite.tiny-cure]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp", "entropy"]
metrics = ["accuracy", "auroc"]
bootstrap = { resamples = 20 }
corruptions = [
    { name = "cure-noise", severities = [1, 5] },
    { name = "cure-gaussian-blur", severities = [1, 5] },
]

[suite.tiny-cifar10-c]
dataset = { name = "cifar10-c", severities = [2, 4] }
classifier = { name = "cnn", epochs = 1, width = 4 }
scorers = ["msp"]
metrics = ["accuracy", "auroc"]
bootstrap = { resamples = 0 }
"""


def test_corruption_cells_give_rows_per_corruption_and_severity_and_pivot(runner, tiny_registry, tmp_path):
    registry = tiny_registry(CURE_SUITE)
    out = tmp_path / "runs" / "cure"
    result = runner.invoke(app, ["run", "tiny-cure", "--registry", str(registry), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    cells = set(zip(table["corruption"], table["severity"]))
    assert cells == {
        ("none", 0),
        ("cure-noise", 1),
        ("cure-noise", 5),
        ("cure-gaussian-blur", 1),
        ("cure-gaussian-blur", 5),
    }
    scores = pd.read_csv(out / "scores.csv.gz", keep_default_na=False)
    clean = scores[scores["corruption"] == "none"]["msp"].to_numpy()
    noisy = scores[(scores["corruption"] == "cure-noise") & (scores["severity"] == 5)]["msp"].to_numpy()
    assert len(noisy) == len(clean) == 300 and (noisy != clean).any()  # the corrupted images were scored
    for cols in ("corruption", "severity"):
        shown = runner.invoke(
            app, ["leaderboard", str(out), "--rows", "method,metric", "--cols", cols, "--format", "csv"]
        )
        assert shown.exit_code == 0, shown.output
        shown_cells = pd.read_csv(io.StringIO(shown.output))
        assert (
            ("cure-noise" in set(shown_cells["corruption"]))
            if cols == "corruption"
            else (5 in set(shown_cells["severity"]))
        )


def test_a_dataset_can_ship_its_own_corrupted_cells(runner, tiny_registry, tmp_path):
    root = tmp_path / "data"
    write_cifar(root, per_batch=4)
    write_cifar_c(root, per_severity=3)
    out = tmp_path / "runs" / "c"
    result = runner.invoke(
        app,
        [
            "run",
            "tiny-cifar10-c",
            "--registry",
            str(tiny_registry(CURE_SUITE)),
            "--data-root",
            str(root),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    cells = table[table["corruption"] != "none"]
    assert set(zip(cells["corruption"], cells["severity"])) == {
        ("fog", 2),
        ("fog", 4),
        ("gaussian-noise", 2),
        ("gaussian-noise", 4),
    }
    assert (cells["n"] == 3).all() and (table[table["corruption"] == "none"]["n"] == 4).all()
    scores = pd.read_csv(out / "scores.csv.gz", keep_default_na=False)
    assert len(scores) == 4 + 4 * 3


@pytest.mark.parametrize("suite", ["cifar10", "cifar10-c", "cure-tsr"])
def test_a_suite_without_its_data_fails_at_once_before_training(runner, tmp_path, session_cache, suite):
    before = set(session_cache.rglob("*"))
    empty = tmp_path / "empty"
    empty.mkdir()
    for extra in ([], ["--data-root", str(empty)]):
        result = runner.invoke(app, ["run", suite, "--out", str(tmp_path / "out"), *extra])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "get the data from" in lines[0] and "lay it out as" in lines[0], lines
        assert ("--data-root" in lines[0]) if not extra else (str(empty) in result.output.replace("\n", ""))
        assert "train " not in result.output and "Traceback" not in result.output
    assert set(session_cache.rglob("*")) == before  # nothing was trained or cached


# -- timm ---------------------------------------------------------------------------
def test_timm_builds_resnet18_for_cifar_shapes_with_named_layers(tiny_registry):
    from probebench.pipeline.features import forward
    from probebench.registry import Registry
    from probebench.suite import load_config

    registry = Registry(load_config(tiny_registry()).builtin)
    model = registry.create("classifier", "timm:resnet18").build(10, (3, 32, 32))
    logits, features = forward(model, torch.rand(2, 3, 32, 32), ("global_pool", "layer4"))
    assert logits.shape == (2, 10) and features["global_pool"].shape == (2, 512)
    grey = registry.create("classifier", "timm", {"arch": "resnet18", "small_input": True}).build(3, (1, 28, 28))
    assert grey.conv1.in_channels == 1 and grey.conv1.stride == (1, 1)
    logits, features = forward(grey, torch.rand(2, 1, 28, 28), ("layer4",))
    assert logits.shape == (2, 3) and features["layer4"].shape == (2, 512 * 4 * 4)  # no stem down-sampling


def test_timm_names_errors_in_one_line(tiny_registry):
    from probebench.errors import UserError
    from probebench.registry import Registry
    from probebench.suite import load_config

    registry = Registry(load_config(tiny_registry()).builtin)
    with pytest.raises(UserError, match="did you mean 'resnet18'"):
        registry.create("classifier", "timm:resnet19").build(10, (3, 32, 32))
    with pytest.raises(UserError, match="name the architecture"):
        registry.create("classifier", "timm")


def test_ls_classifiers_says_how_to_name_a_timm_model(runner):
    result = runner.invoke(app, ["ls", "classifiers"])
    assert result.exit_code == 0 and "cnn" in result.output and "timm:resnet18" in result.output


# -- the grid -----------------------------------------------------------------------
def test_corruption_grid_draws_every_corruption_and_severity(runner, tmp_path):
    from PIL import Image

    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["show", "corruptions", "cure-noise,cure-shadow,pixel*", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 corruption(s)" in result.output
    with Image.open(out) as image:
        width, height = image.size
        grey = np.asarray(image.convert("L"), dtype=float)
    assert width > height > 300 and grey.std() > 20  # a drawn grid, not a blank page
    bad = runner.invoke(app, ["show", "corruptions", "cure-nosie", "--out", str(out)])
    assert bad.exit_code == 2 and "did you mean 'cure-noise'" in bad.output
