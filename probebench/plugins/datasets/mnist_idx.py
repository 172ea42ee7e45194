"""``mnist``: the full MNIST (60,000 + 10,000 digits) from local idx files."""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl
from probebench.plugins.datasets._local import DataFiles, take

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FOLDERS = ["mnist", "MNIST/raw", "."]  # our layout, torchvision's, or the root itself
WHERE = DataFiles(
    "mnist",
    source="the MNIST page (yann.lecun.com/exdb/mnist) or any mirror of its four idx files",
    layout="<data-root>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] "
    "(MNIST/raw/ as torchvision leaves it also works)",
)


class Mnist:
    """Full MNIST from the four idx files (raw or .gz) under ``--data-root``.

    Images float32 [N,1,28,28] in [0,1]; 60,000 train and 10,000 test digits.
    Reads local files only, never downloads.
    """

    name = "mnist"
    version = "1"
    num_classes = 10
    shape = (1, 28, 28)
    option_help = {"limit": "use only the first N images of each split (0 = all)"}
    option_ranges = {"limit": "[0, inf)"}

    def __init__(self, limit: int = 0):

        if limit < 0:
            raise UserError(f"mnist: limit must be >= 0, got {limit}")
        self.limit = limit

    def load(self, split: str, root: str | None = None):
        import torch

        root_dir = WHERE.root(root)
        image_file, label_file = FILES[split]
        folder = self._folder(root_dir)
        images = read_idx(self._file(root_dir, folder, image_file))
        labels = read_idx(self._file(root_dir, folder, label_file))
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(labels) != len(images):
            raise WHERE.missing(
                f"{folder} holds idx files of shapes {images.shape} and {labels.shape}, "
                "expected [N,28,28] images and [N] labels"
            )
        n = take(len(images), self.limit)
        x = torch.from_numpy(images[:n].copy()).float().div_(255.0).unsqueeze(1)
        return x, torch.from_numpy(labels[:n].astype("int64"))

    def _folder(self, root_dir):
        for candidate in FOLDERS:
            folder = WHERE.inside(root_dir, candidate)
            if any((folder / f"{FILES['train'][0]}{ext}").is_file() for ext in ("", ".gz")):
                return folder
        raise WHERE.missing(f"no {FILES['train'][0]}[.gz] in {', '.join(str(root_dir / c) for c in FOLDERS)}")

    def _file(self, root_dir, folder, stem):
        for ext in ("", ".gz"):
            path = WHERE.inside(root_dir, *folder.relative_to(root_dir).parts, stem + ext)
            if path.is_file():
                return path
        raise WHERE.missing(f"{folder / stem}[.gz] is missing")


MAX_IDX_BYTES = 1 << 30  # 1 GiB of pixels: MNIST's largest file holds 47 MB; a header claiming more is refused


def read_idx(path):
    """An idx file (unsigned-byte payload, optionally gzipped) as a uint8 array.

    The header is read first and the payload only up to the size it declares
    (at most ``MAX_IDX_BYTES``), so a short file or a gzip that inflates
    without end (a decompression bomb) is a one-line error, never a memory
    exhaustion."""
    import gzip
    import zlib

    import numpy as np

    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            magic = handle.read(4)
            if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] != 0x08:
                raise WHERE.missing(f"{path} is not an unsigned-byte idx file (bad magic number)")
            ndim = magic[3]
            sizes = handle.read(4 * ndim)
            if len(sizes) < 4 * ndim:
                raise WHERE.missing(
                    f"{path} ends inside its header ({4 + len(sizes)} of {4 + 4 * ndim} bytes); the file is truncated"
                )
            dims = tuple(int.from_bytes(sizes[i : i + 4], "big") for i in range(0, 4 * ndim, 4))
            expected = int(np.prod(dims, dtype=object)) if dims else 1
            if expected > MAX_IDX_BYTES:
                raise WHERE.missing(
                    f"{path} declares {expected} bytes of data (dimensions {list(dims)}), more than the "
                    f"{MAX_IDX_BYTES} an idx file may hold here; the file is damaged or not an MNIST file"
                )
            data = handle.read(expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise WHERE.missing(f"cannot read {path}: {exc}") from None
    if len(data) != expected:
        raise WHERE.missing(
            f"{path} holds {len(data)}{'+' if len(data) > expected else ''} bytes of data, its header says {expected}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


@hookimpl
def register_datasets():
    return [Mnist]
