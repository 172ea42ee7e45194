"""Fingerprints of the data a run actually read, for cache keys and run.json.

Like DVC's ``dvc.lock``: every input file is named by its path relative to the
data root, its size and the SHA-256 of its content, and a changed input gives
a new key. Loaders read files through ``DataFiles`` (``plugins/datasets/_local.py``),
which records every file it resolves; data shipped inside a package is
recorded with ``record_embedded`` (package name, version and the file's hash).
A dataset that records nothing (a third-party loader that opens files itself)
is fingerprinted by a hash of the tensors it returned instead, so its keys are
never blind to the data.

Hashing is done once per file version: digests are remembered by (absolute
path, size, mtime_ns, inode) in ``<cache>/fingerprints.json``, so warm runs
do not read the data twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probebench.cache import atomic_write, cache_root, hash_key, sha256_file


@dataclass
class DataLog:
    """The files (by resolved path, with their data root) and embedded data read while it is active."""

    files: dict[Path, Path] = field(default_factory=dict)  # resolved path -> data root
    embedded: list[dict[str, Any]] = field(default_factory=list)


_LOG: ContextVar[DataLog | None] = ContextVar("probebench_data_log", default=None)


@contextlib.contextmanager
def recording() -> Iterator[DataLog]:
    """Record every data file read through ``DataFiles`` (and embedded data) inside the block."""
    log = DataLog()
    token = _LOG.set(log)
    try:
        yield log
    finally:
        _LOG.reset(token)


def record_file(path: Path, root: Path) -> None:
    """Note that a dataset reads ``path`` (a file under the data root ``root``); a no-op outside ``recording``."""
    log = _LOG.get()
    if log is not None and path.is_file():
        log.files[path] = root


def record_embedded(package: str, version: str, path: Path) -> None:
    """Note that a dataset reads ``path``, a data file shipped inside ``package`` at ``version``."""
    log = _LOG.get()
    if log is not None and all(entry["path"] != Path(path) for entry in log.embedded):
        log.embedded.append({"package": package, "version": version, "file": Path(path).name, "path": Path(path)})


class DigestMemo:
    """SHA-256 of files, remembered by (path, size, mtime_ns, inode) in a small JSON file."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_root() / "fingerprints.json"
        try:
            self.known: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):  # absent or damaged: hash again
            self.known = {}
        self.changed = False

    def sha256(self, path: Path) -> tuple[int, str]:
        """(size, SHA-256) of ``path``; hashed only when its size, mtime or inode changed."""
        stat = path.stat()
        memo_key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
        digest = self.known.get(memo_key)
        if digest is None:
            digest = sha256_file(path)
            self.known[memo_key] = digest
            self.changed = True
        return stat.st_size, digest

    def save(self) -> None:
        """Write the memo back; a cache that cannot be written only costs a rehash next time."""
        if not self.changed:
            return
        text = json.dumps(self.known, sort_keys=True)
        with contextlib.suppress(OSError):
            atomic_write(self.path, lambda tmp: tmp.write_text(text))


def tensor_digest(*tensors: Any) -> str:
    """SHA-256 over the dtype, shape and bytes of ``tensors`` (the fallback fingerprint)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{array.dtype}{list(array.shape)}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def data_record(log: DataLog, tensors: tuple[Any, ...], memo: DigestMemo | None = None) -> dict[str, Any]:
    """What run.json records about the data, and ``fingerprint``: the hash that enters every key."""
    memo = memo or DigestMemo()
    files = []
    for path in sorted(log.files):
        size, digest = memo.sha256(path)
        files.append({"path": path.relative_to(log.files[path]).as_posix(), "size": size, "sha256": digest})
    embedded = []
    for entry in log.embedded:
        size, digest = memo.sha256(entry["path"])
        embedded.append({"package": entry["package"], "version": entry["version"], "file": entry["file"]})
        embedded[-1].update(size=size, sha256=digest)
    memo.save()
    record: dict[str, Any] = {"files": files, "embedded": embedded}
    if not files and not embedded:  # a loader that read its files without DataFiles
        record["tensors_sha256"] = tensor_digest(*tensors)
    record["fingerprint"] = hash_key(record)
    return record
