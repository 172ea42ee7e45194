"""Content-addressed artifact store.

Each stage's output is saved under ``<root>/<stage>/<key>.pt`` where ``key`` is a
hash of everything that determines it. Files are written to a temporary name
and renamed atomically, and a SHA-256 sidecar is written last; an artifact
whose checksum is missing or wrong is reported in one line and rebuilt.
Artifacts hold tensors and plain Python values only and load with
``torch.load(weights_only=True)``: nothing arbitrary is unpickled. Each
payload carries its own ``stage/key`` (``KEY_FIELD``), checked on load, so a
file swapped or renamed into another key's place is caught; a stage may also
pass a ``check`` that validates a loaded payload exactly as a fresh one.

The cache is never a reason to lose work: a write that fails (read-only or
full disk) is one warning line and the run goes on uncached; a folder where
an artifact file should be is reported and replaced. A sidecar's mtime is
refreshed on every load: it says when the artifact was last used (for
``probebench cache gc --older-than``). A store that knows which suite it
serves (``user``, set by ``probebench run``) leaves an empty marker
``<root>/uses/<suite>@<config>/<stage>--<key>`` for every artifact it loads
or saves, from whichever process does the work: ``cache ls`` names the suites
that use an artifact and ``cache gc --unreachable`` finds those that no suite
of the registry uses any more.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probebench.console import console
from probebench.errors import UserError
from probebench.paths import current_umask

if TYPE_CHECKING:  # torch is imported where an artifact is loaded or saved
    import torch


KEY_FIELD = "__probebench_key__"  # the "stage/key" stored inside every artifact
USES = "uses"  # the folder of use markers: <root>/uses/<suite>@<config>/<stage>--<key>
_ACTIVE_ROOT: ContextVar[Path | None] = ContextVar("probebench_cache_root", default=None)


def cache_root() -> Path:
    """The root of the store in use (``ArtifactStore.active``), else ``$PROBEBENCH_CACHE``,
    else ``$XDG_CACHE_HOME/probebench``, else ``~/.cache/probebench``."""
    active = _ACTIVE_ROOT.get()
    if active is not None:
        return active
    env = os.environ.get("PROBEBENCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "probebench"


def hash_key(*parts: Any) -> str:
    """A stable short hash of JSON-able ``parts`` (dict order does not matter)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def content_digest(*arrays: Any) -> str:
    """A SHA-256 of the values, dtypes and shapes of tensors or arrays (what a picture is drawn from)."""
    import numpy as np  # imported here: the CLI imports this module at start-up

    digest = hashlib.sha256()
    for array in arrays:
        if hasattr(array, "detach"):
            array = array.detach().cpu().numpy()
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; a written file follows the umask
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sidecar(path: Path) -> Path:
    """The SHA-256 sidecar of a cached file."""
    return path.with_name(path.name + ".sha256") if path.suffix != ".pt" else path.with_suffix(".sha256")


def read_verified(path: Path, read: Callable[[Path], Any]) -> Any:
    """``read(path)`` when ``path``'s sidecar holds its SHA-256; a ValueError when it does not."""
    try:
        expected = sidecar(path).read_text().strip()
    except OSError:
        expected = ""
    if expected != sha256_file(path):
        raise ValueError("checksum mismatch")
    return read(path)


def write_verified(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` atomically (a folder in its place is replaced), then its SHA-256 sidecar."""
    if path.is_dir() and not path.is_symlink():
        console.print(f"[yellow]cache: {path} is a folder where a cached file belongs; replacing it[/]")
        shutil.rmtree(path)
    atomic_write(path, write)
    atomic_write(sidecar(path), lambda tmp: tmp.write_text(sha256_file(path)))


def read_artifact(path: Path, stage: str, key: str) -> dict:
    """The payload of artifact ``path`` (without its stored key); a ValueError (or
    torch's error) when its checksum is wrong or it holds another stage/key."""
    import torch

    payload = read_verified(path, lambda p: torch.load(p, map_location="cpu", weights_only=True))
    if not isinstance(payload, dict) or payload.pop(KEY_FIELD, None) != f"{stage}/{key}":
        raise ValueError(f"it does not hold {stage}/{key}")
    return payload


class ArtifactStore:
    """Saves and loads stage outputs by key; ``fresh=True`` ignores what was
    stored before the store was opened (``fresh_since``), so what this run
    builds is built once and then loaded, also by its worker processes."""

    def __init__(
        self,
        root: Path | str | None = None,
        fresh: bool = False,
        user: str | None = None,
        *,
        fresh_since: int | None = None,
    ):
        self.root = Path(root) if root else cache_root()
        self.fresh = fresh or fresh_since is not None
        # artifacts not modified after it (ns) are ignored (None: none); a worker gets its driver's. The
        # kernel stamps files from a coarse clock that lags time.time_ns(): a file written before
        # opening is always ignored, one written within a clock tick after may be built again.
        self.fresh_since = fresh_since if fresh_since is not None else (time.time_ns() if fresh else None)
        self.opened = time.time_ns()
        self.user = user  # suite_user(...) of the suite this store serves: its uses are recorded
        self.write_failed = False
        if self.root.exists() and not self.root.is_dir():
            raise UserError(
                f"cache directory {self.root} is a file; pass --cache-dir DIR (or PROBEBENCH_CACHE) a folder"
            )

    @contextlib.contextmanager
    def active(self) -> Iterator[ArtifactStore]:
        """Within the block, ``cache_root()`` is this store's root (datasets keep their files there)."""
        token = _ACTIVE_ROOT.set(self.root)
        try:
            yield self
        finally:
            _ACTIVE_ROOT.reset(token)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.pt"

    def has(self, stage: str, key: str) -> bool:
        """Whether ``load`` would read a stored payload (it may still find it corrupt)."""
        try:
            modified = self.path(stage, key).stat().st_mtime_ns
        except OSError:
            return False
        return self.fresh_since is None or modified > self.fresh_since

    def stored_since_opened(self, stage: str, key: str) -> bool:
        """Whether the stored artifact was written after this store was opened:
        built by this run (or its fit workers, ``executors/workers.py``), not found in the cache."""
        try:
            return self.path(stage, key).stat().st_mtime_ns > self.opened
        except OSError:
            return False

    def load(self, stage: str, key: str, check: Callable[[dict], object] | None = None) -> dict | None:
        """The stored payload, or None when absent, ignored (fresh) or corrupt.

        Corrupt: a wrong checksum, a payload that is not this stage and key's,
        or one that ``check`` rejects with a ValueError."""
        path = self.path(stage, key)
        if not self.has(stage, key):
            return None
        try:
            payload = read_artifact(path, stage, key)
            if check is not None:
                check(payload)
        except Exception as exc:  # truncated, tampered with, swapped, or from an old format
            console.print(f"[yellow]cache: {stage} artifact {path} is corrupt ({exc}); rebuilding it[/]")
            return None
        with contextlib.suppress(OSError):  # last used, for gc; a read-only cache is fine
            os.utime(sidecar(path))
        self._record_use(stage, key)
        return payload

    def _record_use(self, stage: str, key: str) -> None:
        """Mark that ``self.user``'s suite uses this artifact (no-op without a user)."""
        if self.user is None:
            return
        marker = self.root / USES / self.user / f"{stage}--{key}"
        with contextlib.suppress(OSError):  # the marker only informs gc; a read-only cache is fine
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()

    def save(self, stage: str, key: str, payload: dict) -> None:
        """Store ``payload`` under its key; a failed write is one warning and the run goes on uncached."""
        import torch

        path = self.path(stage, key)
        try:
            write_verified(path, lambda tmp: torch.save({**payload, KEY_FIELD: f"{stage}/{key}"}, tmp))
        except OSError as exc:
            if not self.write_failed:
                console.print(
                    f"[yellow]cache: cannot write {path} ({exc.strerror or exc}); going on without caching[/]"
                )
            self.write_failed = True
            return
        self._record_use(stage, key)

    def get_or_build(
        self, stage: str, key: str, build: Callable[[], dict], check: Callable[[dict], object] | None = None
    ) -> dict:
        """The stored payload (when ``check`` accepts it), else ``build()``'s, stored."""
        payload = self.load(stage, key, check)
        if payload is None:
            payload = build()
            self.save(stage, key, payload)
        return payload


def suite_user(suite_name: str, config_hash: str) -> str:
    """How use markers name a suite: ``<suite>@<config hash>`` (path-safe)."""
    from probebench.paths import safe_part

    return f"{safe_part(suite_name)}@{config_hash}"


def load_module_state(
    store: ArtifactStore, stage: str, key: str, payload: dict, module: torch.nn.Module, name: str
) -> None:
    """Load ``payload["state_dict"]`` into ``module``; a checkpoint of another
    architecture is one clear line saying which file and how to get past it."""

    try:
        module.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise UserError(
            f"cached {stage} {store.path(stage, key)} does not fit {name!r}: "
            f"{str(exc).splitlines()[0]}; delete it or run with --fresh"
        ) from None
