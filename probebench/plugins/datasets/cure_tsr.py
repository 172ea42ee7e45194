"""``cure-tsr``: CURE-TSR traffic signs from local BMP files, with its challenge
types as pre-corrupted test cells.

File names say everything: ``sequence_sign_challenge_level_index.bmp``, e.g.
``01_05_03_02_0042.bmp`` = real sequence (01; 02 = unreal), sign 5 (label 4),
challenge 03 (codec error), level 2, instance 42. The split comes from the
folder: files under a folder whose name contains "train" are training images,
"test" test images (the release's ``Real_Train``/``Real_Test``/...).
"""

from __future__ import annotations

import re

from probebench.errors import UserError, suggest
from probebench.hookspecs import hookimpl
from probebench.plugins.corruptions.cure_tsr import CHALLENGE_NAMES
from probebench.plugins.datasets._local import DataFiles, take

FOLDER = "CURE-TSR"
NAME = re.compile(r"^(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d+)\.bmp$", re.IGNORECASE)
SEQUENCES = {"real": ("01",), "unreal": ("02",), "all": ("01", "02")}
NUM_SIGNS = 14
MAX_PIXELS = 4096 * 4096  # CURE-TSR images are a few hundred pixels a side; a header claiming more is refused
WHERE = DataFiles(
    "cure-tsr",
    source="github.com/olivesgatech/CURE-TSR (a form gives the download link)",
    layout=f"<data-root>/{FOLDER}/<...Train or ...Test folder>/**/sequence_sign_challenge_level_index.bmp, "
    f"e.g. {FOLDER}/Real_Train/ChallengeFree/01_01_00_00_0001.bmp",
)


class CureTsr:
    """CURE-TSR traffic signs (14 classes) under ``--data-root``, resized to
    ``size`` x ``size`` RGB. Trains and tests clean on challenge 00; the test
    folders' challenges 01..12 at each level are evaluated as cells named like
    the ``cure-*`` corruptions (``cure-rain``, level = severity).
    """

    name = "cure-tsr"
    version = "1"
    num_classes = NUM_SIGNS
    option_help = {
        "size": "side in pixels the signs are resized to",
        "sequence": "real, unreal or all",
        "challenges": "challenge types to evaluate (e.g. ['cure-rain']); default: all twelve",
        "levels": "challenge levels to evaluate, from 1..5",
        "limit": "use only the first N images of each split and of each cell (0 = all)",
    }
    option_ranges = {"size": "[8, 512]", "limit": "[0, inf)"}

    def __init__(
        self,
        size: int = 32,
        sequence: str = "real",
        challenges: list | None = None,
        levels: list | None = None,
        limit: int = 0,
    ):

        if not 8 <= size <= 512:
            raise UserError(f"cure-tsr: size must lie in 8..512, got {size}")
        if sequence not in SEQUENCES:
            raise UserError(f"cure-tsr: sequence must be one of {', '.join(SEQUENCES)}, got {sequence!r}")
        challenges = list(CHALLENGE_NAMES) if challenges is None else challenges
        for challenge in challenges:
            if challenge not in CHALLENGE_NAMES:
                raise UserError(
                    f"cure-tsr: unknown challenge {challenge!r}{suggest(str(challenge), CHALLENGE_NAMES)}; "
                    f"use {', '.join(CHALLENGE_NAMES)}"
                )
        levels = [1, 2, 3, 4, 5] if levels is None else levels
        if not levels or not all(isinstance(v, int) and 1 <= v <= 5 for v in levels):
            raise UserError(f"cure-tsr: levels must be a list of 1..5, got {levels!r}")
        if limit < 0:
            raise UserError(f"cure-tsr: limit must be >= 0, got {limit}")
        self.size, self.sequence, self.limit = size, sequence, limit
        self.challenges, self.levels = list(challenges), list(levels)
        self.shape = (3, size, size)
        self._index: dict | None = None

    # -- files ------------------------------------------------------------------
    def _files(self, root) -> dict[tuple[str, str, int], list]:
        """Paths by (split, challenge code, level), sorted; indexed once."""
        if self._index is None:
            root_dir = WHERE.root(root)
            folder = WHERE.inside(root_dir, FOLDER)
            if not folder.is_dir():
                raise WHERE.missing(f"{folder} is missing")
            index: dict[tuple[str, str, int], list] = {}
            for path in WHERE.walk(root_dir, folder):
                match = NAME.match(path.name)
                split = _split_of(path.relative_to(folder).parts[:-1])
                if not match or split is None or match.group(1) not in SEQUENCES[self.sequence]:
                    continue
                sign = int(match.group(2))
                if not 1 <= sign <= NUM_SIGNS:
                    continue
                index.setdefault((split, match.group(3), int(match.group(4))), []).append(path)
            self._index = index
        return self._index

    def _read(self, paths):
        import numpy as np
        import torch
        from PIL import Image

        paths = paths[: take(len(paths), self.limit)]
        images = np.empty((len(paths), self.size, self.size, 3), dtype=np.uint8)
        for i, path in enumerate(paths):
            try:
                with Image.open(path) as image:  # reads the header only: the size is known before any pixel
                    width, height = image.size
                    if width * height > MAX_PIXELS:
                        raise WHERE.missing(
                            f"{path} claims {width}x{height} pixels, more than the {MAX_PIXELS} a CURE-TSR image "
                            f"may have here (they are a few hundred pixels wide); the file is damaged or not a sign"
                        )
                    images[i] = np.asarray(image.convert("RGB").resize((self.size, self.size), Image.BILINEAR))
            except (OSError, Image.DecompressionBombError) as exc:
                raise WHERE.missing(f"cannot read {path}: {exc}") from None
        labels = [int(NAME.match(p.name).group(2)) - 1 for p in paths]
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        return x, torch.tensor(labels, dtype=torch.long)

    # -- the Dataset protocol ---------------------------------------------------------
    def load(self, split: str, root: str | None = None):
        files = self._files(root)
        paths = sorted(
            p for (where, code, _level), group in files.items() if where == split and code == "00" for p in group
        )
        if not paths:
            raise WHERE.missing(
                f"no challenge-free (challenge 00) {split} images under "
                f"{WHERE.root(root) / FOLDER} in a folder named *{split}*"
            )
        return self._read(paths)

    def cells(self, root: str | None = None) -> list[tuple[str, int]]:
        """(challenge, level) of every pre-corrupted test set present and asked for."""
        files = self._files(root)
        cells = [
            (name, level)
            for name in self.challenges
            for level in self.levels
            if files.get(("test", _code(name), level))
        ]
        if not cells:
            raise WHERE.missing(
                f"no test images of challenges {', '.join(self.challenges)} at levels "
                f"{self.levels} under {WHERE.root(root) / FOLDER}"
            )
        return cells

    def load_cell(self, corruption: str, severity: int, root: str | None = None):
        return self._read(self._files(root)[("test", _code(corruption), severity)])


def _code(challenge: str) -> str:
    return f"{CHALLENGE_NAMES.index(challenge) + 1:02d}"


def _split_of(folders: tuple[str, ...]) -> str | None:
    for folder in folders:
        lower = folder.lower()
        if "train" in lower:
            return "train"
        if "test" in lower:
            return "test"
    return None


@hookimpl
def register_datasets():
    return [CureTsr]
