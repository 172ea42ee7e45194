"""``--artifacts object-store``: Ray workers without the driver's file system.

With ``shared`` (the default) every worker opens the driver's cache path and
writes it itself, which needs one file system on every node. With
``object-store`` a worker keeps its own cache (its ``$PROBEBENCH_CACHE``,
under ``object-store/``) and:

- an artifact it does not have it reads from the driver's cache through a
  ``CacheReader`` actor pinned to the driver's node (reads only);
- every artifact a task builds, or loads from the worker's own cache while
  the driver's cache lacks it, goes back with the task's result through Ray's
  object store, and so do the files the task wrote into its run folder (the
  worker writes them into a private folder);
- the driver writes them into its cache and run folder as each task ends,
  so the driver's cache holds every artifact of the run and a run
  interrupted on the cluster resumes from it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probebench.cache import ArtifactStore, cache_root, write_verified

MODES = ("shared", "object-store")
WORKER_FOLDER = "object-store"  # a worker's own cache: <its cache root>/object-store


class CacheReader:
    """The driver's cache, read-only, as a Ray actor on the driver's node."""

    def __init__(self, root: str) -> None:
        self.store = ArtifactStore(root)

    def read(self, stage: str, key: str) -> bytes | None:
        """The artifact's file (checked as the cache checks it), or None when the driver has no good copy."""
        path = self.store.path(stage, key)
        try:
            from probebench.cache import read_artifact

            read_artifact(path, stage, key)  # a corrupt copy is not sent: the worker builds it
            return path.read_bytes()
        except Exception:
            return None

    def missing(self, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Which of (stage, key) the driver's cache lacks."""
        return [(stage, key) for stage, key in items if not self.store.path(stage, key).is_file()]


@dataclass
class Shipment:
    """What a task sends the driver besides its result: artifacts and run-folder files, as bytes."""

    artifacts: list[tuple[str, str, bytes]] = field(default_factory=list)  # (stage, key, file)
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (path in the run folder, content)

    def deliver(self, store: ArtifactStore, out: Path) -> None:
        """Write everything into the driver's cache and run folder (atomically, as a task would)."""
        from probebench.cache import atomic_write

        for stage, key, data in self.artifacts:
            write_verified(store.path(stage, key), _writer(data))
            store._record_use(stage, key)
        for relative, data in self.files:
            atomic_write(out / relative, _writer(data))


def _writer(data: bytes) -> Callable[[Path], object]:
    return lambda path: path.write_bytes(data)


class ShippingStore(ArtifactStore):
    """A worker's cache that reads what it lacks from the driver's and notes what to send back."""

    def __init__(self, reader: Any, user: str | None = None) -> None:
        super().__init__(cache_root() / WORKER_FOLDER, user=user)
        self.reader = reader
        self.built: set[tuple[str, str]] = set()
        self.local: set[tuple[str, str]] = set()  # found in this worker's own cache: the driver may lack them

    def load(self, stage: str, key: str, check: Callable[[dict], object] | None = None) -> dict | None:
        import ray

        path = self.path(stage, key)
        if path.is_file():
            self.local.add((stage, key))
        else:
            data = ray.get(self.reader.read.remote(stage, key))
            if data is None:
                return None
            write_verified(path, _writer(data))
        return super().load(stage, key, check)

    def save(self, stage: str, key: str, payload: dict) -> None:
        super().save(stage, key, payload)
        self.built.add((stage, key))

    def shipment(self, out: Path, before: dict[str, int]) -> Shipment:
        """What this task made since ``before`` (``snapshot(out)``), and clears the notes."""
        import ray

        lacking = set(ray.get(self.reader.missing.remote(sorted(self.local - self.built))))
        items = sorted(self.built | lacking)
        self.built, self.local = set(), set()
        artifacts = [(s, k, self.path(s, k).read_bytes()) for s, k in items if self.path(s, k).is_file()]
        after = snapshot(out)
        changed = sorted(p for p, stamp in after.items() if before.get(p) != stamp)
        return Shipment(artifacts, [(p, (out / p).read_bytes()) for p in changed])


def snapshot(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (relative path) with its modification time in ns."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def private_out() -> Path:
    """A folder of this worker process for the run-folder files its tasks write."""
    return Path(tempfile.mkdtemp(prefix="probebench-run-"))


def start_reader(ray: Any, root: Path) -> Any:
    """A ``CacheReader`` of ``root`` on this (the driver's) node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(CacheReader).options(num_cpus=0, scheduling_strategy=here).remote(str(root))
