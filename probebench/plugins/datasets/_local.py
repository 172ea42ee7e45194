"""Finding a real data set's files under the data root, and nowhere else.

Every loader of local files goes through ``DataFiles``: it refuses to work
without a root, resolves every path it opens (symbolic links included) and
refuses one that ends outside the root, and words the one-line error that says
where to get the data and how to lay it out. Every file it resolves is
recorded (``probebench.fingerprint``): its content enters the run's cache keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from probebench.errors import UserError
from probebench.fingerprint import record_file


@dataclass(frozen=True)
class DataFiles:
    """Where a data set's files are expected: ``dataset`` (its registered
    name), ``source`` (where to get the data) and ``layout`` (what to put where,
    relative to the data root)."""

    dataset: str
    source: str
    layout: str

    def missing(self, what: str) -> UserError:
        return UserError(
            f"dataset {self.dataset!r}: {what}; get the data from {self.source} and lay it out as {self.layout}"
        )

    def root(self, root: str | os.PathLike | None) -> Path:
        """The data root, resolved; a missing root is an error that says what to do."""
        if root is None or str(root) == "":
            raise self.missing("it reads local files only and needs --data-root DIR (or data_root in the suite)")
        path = Path(root).expanduser()
        if not path.is_dir():
            raise self.missing(f"data root {path} is not a folder")
        return path.resolve()

    def inside(self, root: Path, *parts: str) -> Path:
        """``root/parts`` resolved; a path that leaves the root (``..``, a link) is an error."""
        path = root.joinpath(*parts).resolve()
        if not path.is_relative_to(root):
            raise UserError(
                f"dataset {self.dataset!r}: {root.joinpath(*parts)} leads outside the data root "
                f"{root} (to {path}); data files must lie under the root"
            )
        record_file(path, root)
        return path

    def first_dir(self, root: Path, candidates: list[str]) -> Path | None:
        """The first of ``candidates`` (relative to root) that is a folder under the root."""
        for candidate in candidates:
            path = self.inside(root, *Path(candidate).parts)
            if path.is_dir():
                return path
        return None

    def walk(self, root: Path, folder: Path) -> Iterator[Path]:
        """Every file under ``folder``, sorted, not following links out of the root."""
        for directory, subdirs, files in os.walk(folder, followlinks=False):
            subdirs.sort()
            for name in sorted(files):
                path = Path(directory) / name
                resolved = path.resolve()
                if resolved.is_relative_to(root):
                    record_file(resolved, root)
                    yield path


def take(n: int, limit: int) -> int:
    """How many of ``n`` items a ``limit`` (0 = no limit) keeps."""
    return n if limit <= 0 else min(n, limit)
