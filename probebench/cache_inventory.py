"""What is in an artifact cache, and keeping it tidy (``probebench cache``).

The cache's layout (``probebench/cache.py``): ``<root>/<stage>/<key>.pt`` with
a ``<key>.sha256`` sidecar whose mtime is the artifact's last use; datasets'
own files under ``<root>/data/`` with ``<name>.sha256`` sidecars; the data
fingerprint memo ``<root>/fingerprints.json``. Every write goes through a
temporary ``.<name>.XXXX`` beside its target: one left behind (a process
killed mid-write) is a *temporary leftover*; a sidecar whose file is gone is
an *orphan*. ``<root>/uses/<suite>@<config>/<stage>--<key>`` are empty
markers saying which suites use an artifact (``ArtifactStore.user``); a
marker whose artifact is gone is an orphan too. Nothing here touches a file
the cache did not make.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from probebench.cache import USES, read_artifact, read_verified, sidecar

DATA = "data"  # the folder datasets keep their cached files in
MEMO = "fingerprints.json"
# A temporary file younger than this may belong to a write in progress (another run on this cache).
TEMP_GRACE_SECONDS = 3600


@dataclass(frozen=True)
class Entry:
    """One cached file: ``stage`` (or ``data``), its ``path``, bytes on disk
    (with its sidecar) and when it was last used (a Unix time)."""

    stage: str
    path: Path
    size: int
    last_used: float

    @property
    def key(self) -> str:
        return self.path.stem if self.path.suffix == ".pt" else self.path.name


def _stage_dirs(root: Path) -> Iterator[Path]:
    if root.is_dir():
        yield from sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name != USES)


def _markers(root: Path) -> Iterator[tuple[str, str, str, Path]]:
    """(user, stage, key, marker path) of every use marker."""
    folder = root / USES
    if not folder.is_dir():
        return
    for user in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
        for marker in sorted(user.iterdir()):
            stage, sep, key = marker.name.partition("--")
            if sep and marker.is_file():
                yield user.name, stage, key, marker


def users(root: Path) -> dict[tuple[str, str], set[str]]:
    """``{(stage, key): {"<suite>@<config>", ...}}``: which suites' runs used each artifact."""
    found: dict[tuple[str, str], set[str]] = {}
    for user, stage, key, _marker in _markers(root):
        found.setdefault((stage, key), set()).add(user)
    return found


def retired_markers(root: Path, current: set[str]) -> list[Path]:
    """Use markers of suites (``suite_user`` names) not in ``current``: configs no longer in the registry."""
    return [marker for user, _stage, _key, marker in _markers(root) if user not in current]


def unreachable(found: list[Entry], used: dict[tuple[str, str], set[str]], current: set[str]) -> list[Entry]:
    """The artifacts (not dataset files) that no suite in ``current`` (``suite_user`` names) uses."""
    return [e for e in found if e.stage != DATA and not used.get((e.stage, e.key), set()) & current]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def entries(root: Path) -> list[Entry]:
    """Every artifact and dataset file in the cache, by stage then key."""
    found = []
    for folder in _stage_dirs(root):
        for path in sorted(folder.iterdir()):
            is_artifact = path.suffix == ".pt" if folder.name != DATA else path.suffix != ".sha256"
            if path.name.startswith(".") or not is_artifact or not path.is_file():
                continue
            check = sidecar(path)
            used = (check if check.exists() else path).stat().st_mtime
            found.append(Entry(folder.name, path, _size(path) + _size(check), used))
    return found


def leftovers(root: Path, now: float | None = None) -> list[Path]:
    """Temporary files of interrupted writes (older than ``TEMP_GRACE_SECONDS``) and orphan sidecars."""
    now = time.time() if now is None else now
    found = []
    candidates = [*(p for folder in _stage_dirs(root) for p in folder.iterdir()), *_root_files(root)]
    for path in sorted(candidates):
        if not path.is_file():
            continue
        if path.name.startswith("."):
            if now - path.stat().st_mtime > TEMP_GRACE_SECONDS:
                found.append(path)
        elif path.suffix == ".sha256" and not _sidecar_owner(path).exists():
            found.append(path)
    found += [marker for _user, stage, key, marker in _markers(root) if not (root / stage / f"{key}.pt").exists()]
    return found


def _root_files(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file()) if root.is_dir() else []


def _sidecar_owner(path: Path) -> Path:
    """The file a sidecar vouches for."""
    return path.with_suffix(".pt") if path.parent.name != DATA else path.with_suffix("")


def problem(entry: Entry) -> str | None:
    """Why ``entry`` cannot be used (checksum, stored key, format), or None when it is sound."""
    try:
        if entry.stage == DATA:
            read_verified(entry.path, lambda _path: None)
        else:
            read_artifact(entry.path, entry.stage, entry.key)
    except Exception as exc:  # what the store would report as corrupt
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def stale(found: list[Entry], older_than_days: float, now: float | None = None) -> list[Entry]:
    """The entries not used for more than ``older_than_days`` days."""
    now = time.time() if now is None else now
    return [e for e in found if now - e.last_used > older_than_days * 86400]


def remove(paths: list[Path]) -> int:
    """Delete ``paths`` (and the sidecars of artifacts among them); the bytes freed."""
    freed = 0
    for path in paths:
        for target in (path, sidecar(path)) if not path.name.endswith(".sha256") else (path,):
            size = _size(target)
            try:
                target.unlink()
            except FileNotFoundError:
                continue
            freed += size
    return freed


def everything(root: Path) -> list[Path]:
    """Every file the cache made (artifacts, sidecars, leftovers of any age, the memo)."""
    markers = [marker for *_rest, marker in _markers(root)]
    files = (
        [e.path for e in entries(root)] + markers + [p for p in leftovers(root, now=float("inf")) if p not in markers]
    )
    memo = root / MEMO
    return files + ([memo] if memo.is_file() else [])


def prune_empty(root: Path) -> None:
    """Remove stage (and use-marker) folders left empty."""
    uses = root / USES
    for folder in [*_stage_dirs(root), *(sorted(uses.iterdir()) if uses.is_dir() else []), uses]:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
