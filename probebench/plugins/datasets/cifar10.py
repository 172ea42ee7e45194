"""``cifar10`` and ``cifar10-c``: CIFAR-10 from its python batches, and CIFAR-10-C.

CIFAR-10's "python version" is a set of pickles. Unpickling can run arbitrary
code, so the batches are read with ``BatchUnpickler``, which resolves only the
four globals a batch needs (NumPy's array reconstructor, ``ndarray``,
``dtype``, and ``_codecs.encode`` for bytes) and refuses every other global;
the result must then be a dict of exactly the expected keys and types.
``encoding='bytes'`` is the decoding the CIFAR page prescribes for these
Python-2 pickles. CIFAR-10-C is read with ``numpy.load(allow_pickle=False)``.
"""

from __future__ import annotations

import pickle

from probebench.errors import UserError
from probebench.hookspecs import hookimpl
from probebench.plugins.datasets._local import DataFiles, take

BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR_DIR = "cifar-10-batches-py"
C_DIR = "CIFAR-10-C"
CIFAR = DataFiles(
    "cifar10",
    source="www.cs.toronto.edu/~kriz/cifar.html (CIFAR-10 python version, cifar-10-python.tar.gz)",
    layout=f"<data-root>/{CIFAR_DIR}/{{data_batch_1..5,test_batch}} (the tarball's folder, extracted)",
)
CIFAR_C = DataFiles(
    "cifar10-c",
    source="zenodo.org/record/2535967 (CIFAR-10-C.tar, Hendrycks & Dietterich 2019) plus CIFAR-10 "
    "from www.cs.toronto.edu/~kriz/cifar.html",
    layout=f"<data-root>/{C_DIR}/<corruption>.npy (uint8 [50000,32,32,3] = severities 1..5 x 10000) "
    f"and labels.npy, beside <data-root>/{CIFAR_DIR}/",
)


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch and nothing else: only NumPy array reconstruction
    and bytes decoding may be looked up."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),  # as written by NumPy 1 (and the original files)
        ("numpy._core.multiarray", "_reconstruct"),  # as written by NumPy 2
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # Python 3 protocol-2 pickles write bytes through it
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        if module.endswith("multiarray"):
            import numpy as np

            core = getattr(np, "_core", None) or np.core  # NumPy 2 renamed numpy.core
            return core.multiarray._reconstruct
        return super().find_class(module, name)


def read_batch(path, where: DataFiles):
    """(uint8 images [N,3,32,32], int64 labels [N]) of one CIFAR-10 python batch."""
    import numpy as np

    try:
        with open(path, "rb") as handle:
            batch = BatchUnpickler(handle, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise where.missing(f"{path} is not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(batch, dict):
        raise where.missing(f"{path} holds a {type(batch).__name__}, not a CIFAR-10 batch dict")
    data, labels = batch.get(b"data", batch.get("data")), batch.get(b"labels", batch.get("labels"))
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
        or not isinstance(labels, list)
        or len(labels) != len(data)
        or not all(isinstance(v, int) and 0 <= v < 10 for v in labels)
    ):
        raise where.missing(f"{path} lacks uint8 'data' [N,3072] with N int 'labels' 0..9")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


class Cifar10:
    """CIFAR-10 (50,000 train, 10,000 test, 32x32 RGB) from the python batches
    under ``--data-root``; read with a restricted unpickler, never downloaded.
    """

    name = "cifar10"
    version = "1"
    num_classes = 10
    shape = (3, 32, 32)
    where = CIFAR
    option_help = {"limit": "use only the first N images of each split (0 = all)"}
    option_ranges = {"limit": "[0, inf)"}

    def __init__(self, limit: int = 0):

        if limit < 0:
            raise UserError(f"{self.name}: limit must be >= 0, got {limit}")
        self.limit = limit

    def load(self, split: str, root: str | None = None):
        import numpy as np
        import torch

        root_dir = self.where.root(root)
        images, labels = [], []
        for batch in BATCHES[split]:
            path = self.where.inside(root_dir, CIFAR_DIR, batch)
            if not path.is_file():
                raise self.where.missing(f"{path} is missing")
            x, y = read_batch(path, self.where)
            images.append(x)
            labels.append(y)
            if self.limit and sum(map(len, labels)) >= self.limit:
                break  # the first batches already hold the images a limit keeps
        x, y = np.concatenate(images), np.concatenate(labels)
        n = take(len(x), self.limit)
        return torch.from_numpy(x[:n]).float().div_(255.0), torch.from_numpy(y[:n])


class Cifar10C(Cifar10):
    """CIFAR-10 for training and clean testing, plus CIFAR-10-C's pre-corrupted
    test sets (19 corruptions x severities 1..5, ``<corruption>.npy``) as test
    cells named like the ImageNet-C corruptions (``gaussian_noise.npy`` ->
    ``gaussian-noise``).
    """

    name = "cifar10-c"
    where = CIFAR_C
    option_help = {
        "limit": "use only the first N images of each split and of each corrupted cell (0 = all)",
        "corruptions": "file names (without .npy) to use; default: every .npy but labels.npy",
        "severities": "severities to use, from 1..5",
    }

    def __init__(self, limit: int = 0, corruptions: list | None = None, severities: list | None = None):

        super().__init__(limit)
        severities = [1, 2, 3, 4, 5] if severities is None else severities
        if not severities or not all(isinstance(s, int) and 1 <= s <= 5 for s in severities):
            raise UserError(f"cifar10-c: severities must be a list of 1..5, got {severities!r}")
        if corruptions is not None and (not corruptions or not all(isinstance(c, str) for c in corruptions)):
            raise UserError(f"cifar10-c: corruptions must be a list of file names, got {corruptions!r}")
        self.corruptions, self.severities = corruptions, list(severities)

    def _files(self, root_dir) -> dict:
        folder = self.where.inside(root_dir, C_DIR)
        if not folder.is_dir():
            raise self.where.missing(f"{folder} is missing")
        present = {p.stem: p for p in sorted(folder.glob("*.npy")) if p.stem != "labels"}
        wanted = self.corruptions if self.corruptions is not None else list(present)
        absent = [c for c in wanted if c not in present]
        if absent or not wanted:
            raise self.where.missing(
                f"{folder} lacks {', '.join(a + '.npy' for a in absent) or 'any <corruption>.npy'}"
            )
        labels = self.where.inside(root_dir, C_DIR, "labels.npy")  # resolved here so the fingerprint holds it
        if not labels.is_file():
            raise self.where.missing(f"{labels} is missing")
        return {c.replace("_", "-"): self.where.inside(root_dir, C_DIR, c + ".npy") for c in wanted}

    def cells(self, root: str | None = None) -> list[tuple[str, int]]:
        """(corruption, severity) of every pre-corrupted test set to evaluate."""
        files = self._files(self.where.root(root))
        return [(name, severity) for name in files for severity in self.severities]

    def load_cell(self, corruption: str, severity: int, root: str | None = None):
        import numpy as np
        import torch

        root_dir = self.where.root(root)
        path = self._files(root_dir)[corruption]
        try:
            images = np.load(path, mmap_mode="r", allow_pickle=False)
            labels = np.load(self.where.inside(root_dir, C_DIR, "labels.npy"), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise self.where.missing(f"cannot read {path}: {exc}") from None
        if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8 or len(images) % 5:
            raise self.where.missing(f"{path} holds {images.dtype} {list(images.shape)}, expected uint8 [5*n,32,32,3]")
        per_severity = len(images) // 5
        if labels.ndim != 1 or len(labels) not in (len(images), per_severity):
            raise self.where.missing(f"labels.npy has shape {list(labels.shape)}, expected [{len(images)}]")
        start = (severity - 1) * per_severity
        n = take(per_severity, self.limit)
        x = torch.from_numpy(np.array(images[start : start + n])).permute(0, 3, 1, 2).float().div_(255.0)
        y = labels[start : start + n] if len(labels) == len(images) else labels[:n]
        return x.contiguous(), torch.from_numpy(y.astype(np.int64))


@hookimpl
def register_datasets():
    return [Cifar10, Cifar10C]
