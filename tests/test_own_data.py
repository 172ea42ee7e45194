"""Your own data without a plugin: ``image-folder`` (ImageFolder layout) and
``arrays`` (.npz / .pt), on tiny files written here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import probebench
from probebench.errors import UserError
from probebench.pipeline.data import load_splits
from probebench.registry import Registry
from probebench.suite import ComponentSpec, load_config

CLASSES = ["cat", "dog", "emu"]


@pytest.fixture
def registry() -> Registry:
    return Registry(load_config(None).builtin)


def write_folder(root, per_class=(6, 3)) -> None:
    """root/{train,test}/<class>/i.png: class c is a 40x20 picture whose left half is dark, right half c-bright."""
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "test"), per_class):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.zeros((20, 40, 3), dtype=np.uint8)
                pixels[:, 20:] = 60 + 90 * c
                pixels += rng.integers(0, 5, size=pixels.shape, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.{'png' if i % 2 else 'jpg'}")


def splits(registry, name, options, root):
    return load_splits(registry, ComponentSpec(name, options, name), str(root))


def test_image_folder_resizes_crops_and_keeps_class_names(registry, tmp_path):
    write_folder(tmp_path)
    data = splits(registry, "image-folder", {"size": 16}, tmp_path)
    assert data.train_images.shape == (18, 3, 16, 16) and data.test_images.shape == (9, 3, 16, 16)
    assert data.dataset.classes == CLASSES and data.data["classes"] == CLASSES
    assert data.train_labels.bincount().tolist() == [6, 6, 6]
    # 40x20 -> shorter side 16 -> 32x16 -> centre crop: columns 0..7 are the dark half, 8..15 the bright one
    image = data.test_images[data.test_labels == 2][0]
    assert image[:, :, :7].max() < 0.05 and image[:, :, 9:].min() > 200 / 255


def test_image_folder_limit_keeps_every_class_and_grey_has_one_channel(registry, tmp_path):
    write_folder(tmp_path)
    data = splits(registry, "image-folder", {"size": 12, "channels": 1, "limit": 5}, tmp_path)
    assert data.train_images.shape == (5, 1, 12, 12) and set(data.train_labels.tolist()) == {0, 1, 2}


def test_image_folder_fingerprint_follows_an_image(registry, tmp_path):
    write_folder(tmp_path)
    before = splits(registry, "image-folder", {"size": 12}, tmp_path).fingerprint
    Image.new("RGB", (40, 20), "white").save(tmp_path / "test" / "cat" / "1.png")
    assert splits(registry, "image-folder", {"size": 12}, tmp_path).fingerprint != before


def test_image_folder_reads_nothing_outside_the_root(registry, tmp_path):
    root = tmp_path / "root"
    write_folder(root)
    outside = tmp_path / "secret.png"
    Image.new("RGB", (40, 20), "white").save(outside)
    (root / "train" / "cat" / "link.png").symlink_to(outside)
    data = splits(registry, "image-folder", {"size": 12}, root)
    assert len(data.train_labels) == 18  # the link out of the root is skipped
    assert all(not entry["path"].endswith("link.png") for entry in data.data["files"])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "test" / "emu").rename(root / "test" / "eagle"), "has classes"),
        (lambda root: [p.unlink() for p in (root / "train" / "dog").iterdir()], "dog hold no"),
        (lambda root: (root / "train" / "cat" / "0.jpg").write_bytes(b"not an image"), "cannot read image"),
    ],
)
def test_image_folder_problems_are_one_line_errors(registry, tmp_path, damage, message):
    write_folder(tmp_path)
    damage(tmp_path)
    with pytest.raises(UserError, match=message) as error:
        splits(registry, "image-folder", {"size": 12}, tmp_path)
    assert "\n" not in str(error.value)


def arrays(n_train=20, n_test=8):
    rng = np.random.default_rng(1)
    return {
        "train_images": rng.integers(0, 256, (n_train, 14, 14, 3), dtype=np.uint8),  # NHWC uint8
        "train_labels": np.arange(n_train) % 4,
        "test_images": rng.integers(0, 256, (n_test, 14, 14, 3), dtype=np.uint8),
        "test_labels": np.arange(n_test) % 4,
    }


def test_arrays_reads_npz_and_pt_to_the_same_images(registry, tmp_path):
    raw = arrays()
    np.savez(tmp_path / "data.npz", **raw, classes=np.array(["a", "b", "c", "d"]))
    nchw = {
        k: torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255 if "images" in k else torch.from_numpy(v)
        for k, v in raw.items()
    }
    torch.save(nchw, tmp_path / "data.pt")
    from_npz = splits(registry, "arrays", {}, tmp_path)
    from_pt = splits(registry, "arrays", {"file": "data.pt"}, tmp_path)
    assert from_npz.dataset.shape == (3, 14, 14) and from_npz.dataset.num_classes == 4
    assert from_npz.data["classes"] == ["a", "b", "c", "d"] and "classes" not in from_pt.data
    torch.testing.assert_close(from_npz.train_images, from_pt.train_images)
    torch.testing.assert_close(from_npz.test_labels, from_pt.test_labels)
    assert from_npz.train_images[0, 2, 3, 4] == pytest.approx(raw["train_images"][0, 3, 4, 2] / 255)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"train_images": np.zeros((4, 8, 8))}, "has no train_labels"),
        ({**arrays(), "test_labels": np.array([object()] * 8)}, "without pickles"),
    ],
)
def test_arrays_problems_are_one_line_errors(registry, tmp_path, content, message):
    np.savez(tmp_path / "data.npz", **content)
    with pytest.raises(UserError, match=message):
        splits(registry, "arrays", {}, tmp_path)


def test_arrays_path_must_stay_inside_the_root(registry, tmp_path):
    (tmp_path / "root").mkdir()
    np.savez(tmp_path / "data.npz", **arrays())
    with pytest.raises(UserError, match="leads outside the data root"):
        splits(registry, "arrays", {"file": "../data.npz"}, tmp_path / "root")


def test_a_run_on_an_image_folder_names_its_classes_in_run_json_and_the_report(tmp_path, runner):
    write_folder(tmp_path / "images", per_class=(10, 4))
    suite = {
        "dataset": {"name": "image-folder", "size": 12},
        "data_root": str(tmp_path / "images"),
        "classifier": {"name": "cnn", "epochs": 1, "width": 4},
        "scorers": ["msp"],
        "metrics": ["accuracy", "auroc"],
        "bootstrap": {"resamples": 0},
    }
    run = probebench.run(suite, out=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["data"]["classes"] == CLASSES
    assert set(run.results.metric) == {"accuracy", "auroc"}
    from probebench.cli import app

    result = runner.invoke(app, ["report", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "run" / "report.html").read_text()
    assert "cat, dog, emu" in html
