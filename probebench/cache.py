"""Content-addressed artifact store.

Each stage's output is saved under ``<root>/<stage>/<key>.pt`` where ``key`` is a
hash of everything that determines it. Files are written to a temporary name
and renamed atomically, and a SHA-256 sidecar is written last; an artifact
whose checksum is missing or wrong is reported in one line and rebuilt.
Artifacts hold tensors and plain Python values only and load with
``torch.load(weights_only=True)``: nothing arbitrary is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probebench.console import console
from probebench.errors import UserError
from probebench.paths import current_umask

if TYPE_CHECKING:  # torch is imported where an artifact is loaded or saved
    import torch


def cache_root() -> Path:
    """``$PROBEBENCH_CACHE``, else ``$XDG_CACHE_HOME/probebench``, else ``~/.cache/probebench``."""
    env = os.environ.get("PROBEBENCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "probebench"


def hash_key(*parts: Any) -> str:
    """A stable short hash of JSON-able ``parts`` (dict order does not matter)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _sha256(path: Path) -> str:
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


class ArtifactStore:
    """Saves and loads stage outputs by key; ``fresh=True`` ignores what is stored."""

    def __init__(self, root: Path | str | None = None, fresh: bool = False):
        self.root = Path(root) if root else cache_root()
        self.fresh = fresh

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.pt"

    def load(self, stage: str, key: str) -> dict | None:
        """The stored payload, or None when absent, ignored (fresh) or corrupt."""
        import torch

        path = self.path(stage, key)
        if self.fresh or not path.exists():
            return None
        sidecar = path.with_suffix(".sha256")
        try:
            expected = sidecar.read_text().strip()
        except OSError:
            expected = ""
        try:
            if expected != _sha256(path):
                raise ValueError("checksum mismatch")
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, tampered with, or from an old format
            console.print(f"[yellow]cache: {stage} artifact {path} is corrupt ({exc}); rebuilding it[/]")
            return None

    def save(self, stage: str, key: str, payload: dict) -> None:
        import torch

        path = self.path(stage, key)
        atomic_write(path, lambda tmp: torch.save(payload, tmp))
        atomic_write(path.with_suffix(".sha256"), lambda tmp: tmp.write_text(_sha256(path)))

    def get_or_build(self, stage: str, key: str, build: Callable[[], dict]) -> dict:
        payload = self.load(stage, key)
        if payload is None:
            payload = build()
            self.save(stage, key, payload)
        return payload


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
