"""``arrays``: your own images and labels as arrays in one .npz or .pt file."""

from __future__ import annotations

from typing import Any

from probebench.errors import UserError
from probebench.hookspecs import hookimpl
from probebench.plugins.datasets._local import DataFiles, take

MAX_BYTES = 8 << 30  # 8 GiB of arrays, uncompressed: more is a wrong file (or a zip bomb)
KEYS = ("train_images", "train_labels", "test_images", "test_labels")
WHERE = DataFiles(
    "arrays",
    source="your own arrays (numpy.savez or torch.save of a dict)",
    layout="<data-root>/<file>.npz|.pt with train_images, train_labels, test_images, test_labels "
    "(images [N,H,W], [N,C,H,W] or [N,H,W,C], uint8 0..255 or float 0..1) and optionally classes (names)",
)


class Arrays:
    """Your own images and labels per split in one ``.npz`` (``numpy.savez``)
    or ``.pt`` (``torch.save`` of a dict of tensors) file under the data root,
    with the arrays ``train_images``, ``train_labels``, ``test_images`` and
    ``test_labels``. Images may be [N,H,W], [N,C,H,W] or [N,H,W,C] (C = 1 or 3),
    uint8 0..255 or float 0..1; labels are class numbers 0..K-1. An optional
    ``classes`` array of K names is kept in run.json and shown in reports.

    Read without unpickling anything (``numpy.load(allow_pickle=False)``,
    ``torch.load(weights_only=True)``), at most 8 GiB of arrays; the file is
    in the run's data fingerprint. ``num_classes`` defaults to the number of
    names, else the largest label + 1 over both splits.
    """

    name = "arrays"
    version = "1"
    option_help = {
        "file": "the .npz or .pt file, relative to the data root",
        "num_classes": "number of classes (0 = from the classes names, else the largest label + 1)",
        "limit": "use only the first N images of each split (0 = all)",
    }
    option_ranges = {"num_classes": "[0, inf)", "limit": "[0, inf)"}

    def __init__(self, file: str = "data.npz", num_classes: int = 0, limit: int = 0):
        if not file.endswith((".npz", ".pt")):
            raise UserError(f"arrays: file must be a .npz or .pt file, got {file!r}")
        if num_classes < 0 or limit < 0:
            raise UserError("arrays: num_classes and limit must be >= 0")
        self.file, self.limit, self._num_classes = file, limit, num_classes
        self.num_classes = num_classes
        self.shape: tuple[int, int, int] = (0, 0, 0)  # known once the file is read
        self.classes: list[str] = []
        self._arrays: dict[str, Any] | None = None

    def load(self, split: str, root: str | None = None):
        import torch

        arrays = self._read(root)
        images = _nchw(torch.as_tensor(arrays[f"{split}_images"]), f"{self.file}: {split}_images")
        labels = torch.as_tensor(arrays[f"{split}_labels"])
        n = take(len(images), self.limit)
        return images[:n], labels[:n]

    def _read(self, root: str | None) -> dict[str, Any]:
        if self._arrays is not None:
            return self._arrays
        import numpy as np

        root_dir = WHERE.root(root)
        path = WHERE.inside(root_dir, *self.file.split("/"))
        if not path.is_file():
            raise WHERE.missing(f"no file {path}")
        arrays = _read_npz(path) if path.suffix == ".npz" else _read_pt(path)
        missing = [key for key in KEYS if key not in arrays]
        if missing:
            raise WHERE.missing(f"{path} has no {', '.join(missing)} (it has {', '.join(sorted(arrays))})")
        self.classes = [str(name) for name in np.asarray(arrays.get("classes", [])).reshape(-1).tolist()]
        highest = max(int(np.asarray(arrays[key]).max(initial=0)) for key in ("train_labels", "test_labels"))
        self.num_classes = self._num_classes or len(self.classes) or highest + 1
        if self.classes and len(self.classes) != self.num_classes:
            raise WHERE.missing(f"{path} names {len(self.classes)} classes but num_classes is {self.num_classes}")
        import torch

        self.shape = tuple(_nchw(torch.as_tensor(arrays["train_images"][:1]), f"{path}: train_images").shape[1:])
        self._arrays = arrays
        return arrays


def _read_npz(path) -> dict[str, Any]:
    import zipfile

    import numpy as np

    try:
        with zipfile.ZipFile(path) as archive:
            size = sum(info.file_size for info in archive.infolist())
        if size > MAX_BYTES:
            raise WHERE.missing(f"{path} unpacks to {size} bytes, more than {MAX_BYTES}")
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise WHERE.missing(f"cannot read {path} as .npz without pickles: {exc}") from None


def _read_pt(path) -> dict[str, Any]:
    import pickle

    import torch

    if path.stat().st_size > MAX_BYTES:
        raise WHERE.missing(f"{path} is larger than {MAX_BYTES} bytes")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError) as exc:
        raise WHERE.missing(f"cannot read {path} with weights_only=True: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise WHERE.missing(f"{path} holds a {type(data).__name__}, not a dict of arrays")
    return data


def _nchw(images, where: str):
    """Images [N,C,H,W] float in [0,1] from [N,H,W], [N,C,H,W] or [N,H,W,C], uint8 or float."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise UserError(f"{where}: expected images [N,H,W], [N,C,H,W] or [N,H,W,C], got {list(images.shape)}")
    if images.shape[1] not in (1, 3) and images.shape[3] in (1, 3):
        images = images.permute(0, 3, 1, 2)
    import torch

    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float().contiguous()


@hookimpl
def register_datasets():
    return [Arrays]
