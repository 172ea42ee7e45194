"""``image-folder``: your own images in torchvision's ImageFolder layout."""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl
from probebench.plugins.datasets._local import DataFiles, take

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
MAX_IMAGES = 200_000  # per split: more is surely a wrong root (and more than memory holds at 224x224)
MAX_PIXELS = 50_000_000  # per image, before resizing: PIL's guard against decompression bombs
WHERE = DataFiles(
    "image-folder",
    source="your own images",
    layout="<data-root>/{train,test}/<class name>/*.png|jpg (torchvision's ImageFolder layout, "
    "the same class folders in both)",
)


class ImageFolder:
    """Your own images, one folder per class (torchvision's ImageFolder layout):
    ``<data-root>/train/<class>/*.png|jpg|jpeg|bmp`` and the same class folders
    under ``test/``. Classes are the folder names in sorted order (class 0 is
    the first); they are kept in run.json and shown in reports and grids.

    Each image is resized so its shorter side is ``size`` pixels, then
    centre-cropped to ``size`` x ``size`` (a fixed resize/crop, no random
    augmentation), and converted to ``channels`` (1 = grey, 3 = RGB). Reads
    only files under the data root (links leading out are skipped), at most
    200,000 images a split of at most 50 megapixels each; every file read is
    in the run's data fingerprint.
    """

    name = "image-folder"
    version = "1"
    option_help = {
        "size": "side of the square images: shorter side resized to it, then centre-cropped",
        "channels": "1 (grey) or 3 (RGB)",
        "limit": "use only N images of each split, taken from the classes in turn (0 = all)",
    }
    option_ranges = {"size": "[8, 1024]", "limit": "[0, inf)"}

    def __init__(self, size: int = 32, channels: int = 3, limit: int = 0):
        if channels not in (1, 3):
            raise UserError(f"image-folder: channels must be 1 or 3, got {channels}")
        if not 8 <= size <= 1024 or limit < 0:
            raise UserError(f"image-folder: size must lie in [8, 1024] and limit be >= 0, got {size} and {limit}")
        self.size, self.channels, self.limit = size, channels, limit
        self.shape = (channels, size, size)
        self.classes: list[str] = []
        self.num_classes = 0  # known once a split is loaded

    def load(self, split: str, root: str | None = None):
        import torch

        root_dir = WHERE.root(root)
        folder = WHERE.inside(root_dir, split)
        if not folder.is_dir():
            raise WHERE.missing(f"no folder {folder}")
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise WHERE.missing(f"{folder} has no class folders")
        if self.classes and classes != self.classes:
            raise WHERE.missing(
                f"{folder} has classes {classes} but the other split has {self.classes}; use the same class folders"
            )
        self.classes, self.num_classes = classes, len(classes)
        per_class = [
            [path for path in WHERE.walk(root_dir, folder / name) if path.suffix.lower() in EXTENSIONS]
            for name in classes
        ]
        empty = [name for name, paths in zip(classes, per_class) if not paths]
        if empty:
            raise WHERE.missing(f"{folder}: class folder(s) {', '.join(empty)} hold no {'/'.join(EXTENSIONS)} image")
        # the classes in turn, so a limit keeps every class
        order = sorted(
            ((rank, label, path) for label, paths in enumerate(per_class) for rank, path in enumerate(paths)),
            key=lambda item: (item[0], item[1]),
        )
        if len(order) > MAX_IMAGES:
            raise WHERE.missing(f"{folder} holds {len(order)} images, more than {MAX_IMAGES}; is the root right?")
        order = order[: take(len(order), self.limit)]
        images = torch.stack([self._read(path) for _rank, _label, path in order])
        return images, torch.tensor([label for _rank, label, _path in order], dtype=torch.int64)

    def _read(self, path):
        import numpy as np
        import torch
        from PIL import Image, UnidentifiedImageError

        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        try:
            with Image.open(path) as image:
                image = image.convert("L" if self.channels == 1 else "RGB")
                scale = self.size / min(image.size)
                width, height = max(self.size, round(image.width * scale)), max(self.size, round(image.height * scale))
                image = image.resize((width, height), Image.Resampling.BILINEAR)
                left, top = (width - self.size) // 2, (height - self.size) // 2
                image = image.crop((left, top, left + self.size, top + self.size))
                pixels = np.asarray(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise WHERE.missing(f"cannot read image {path}: {exc}") from None
        tensor = torch.from_numpy(pixels.copy()).float().div_(255.0)
        return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)


@hookimpl
def register_datasets():
    return [ImageFolder]
