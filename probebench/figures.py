"""Figures cached by the key of their inputs.

A run's pictures (a flow's samples and reconstructions, a corrector's grid of
corrected misses) are pure functions of cached artifacts. Drawing them again
on every run cost a warm run about a third of its time (flow sampling and
matplotlib), so the PNG bytes are stored in the artifact store under a key
of everything the picture is drawn from, and a warm run copies them into the
run folder. ``DRAWING_VERSION`` is part of every key: bump it when the
drawing code changes what a picture looks like.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probebench.cache import atomic_write, hash_key

if TYPE_CHECKING:
    from probebench.cache import ArtifactStore

STAGE = "figure"
DRAWING_VERSION = "1"


def figure_key(name: str, *parts: Any) -> str:
    """The key of figure ``name`` drawn from ``parts`` (JSON-able: keys, digests, titles)."""
    return hash_key(STAGE, name, DRAWING_VERSION, *parts)


def cached_figures(
    store: ArtifactStore | None, key: str, paths: Sequence[Path], draw: Callable[[list[Path]], object]
) -> None:
    """Write the files ``paths``: copies of those drawn before under ``key``
    when ``store`` has them, else ``draw(paths)``'s (then stored; without a
    store or a key, drawn every time). ``draw`` writes into a temporary
    folder; each file appears atomically."""

    def build() -> dict[str, Any]:
        import torch

        with tempfile.TemporaryDirectory(prefix="probebench-figure-") as folder:
            drawn = [Path(folder) / f"{i}{path.suffix}" for i, path in enumerate(paths)]
            draw(drawn)
            return {"files": [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in drawn]}

    if store is None or not key:
        files = build()["files"]
    else:
        files = store.get_or_build(STAGE, key, build, check=lambda payload: _check(payload, len(paths)))["files"]
    for path, data in zip(paths, files):
        atomic_write(path, partial(_write_bytes, data.numpy().tobytes()))


def _write_bytes(data: bytes, path: Path) -> None:
    path.write_bytes(data)


def _check(payload: dict[str, Any], count: int) -> None:
    files = payload.get("files")
    if not isinstance(files, list) or len(files) != count:
        raise ValueError(f"it holds no list of {count} files")
