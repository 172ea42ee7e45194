"""Executors: what runs a run's graph of stage tasks (``probebench.pipeline.graph``).

``local`` (the default) runs the tasks in this process, in the graph's
order; ``ray`` runs each as a Ray task on a cluster (``ray_cluster.py``).
An executor is any object with ``execute(graph, runs) -> the target task's
output`` (``runs``: the runs of a combined graph, ``pipeline/combined.py``, one
per suite and seed); whichever runs a graph, the results are the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from probebench.errors import UserError

if TYPE_CHECKING:
    from probebench.pipeline.graph import Graph


class Executor(Protocol):
    def execute(self, graph: Graph, runs: Sequence[Any]) -> Any:
        """Run every task of ``graph`` (each after its inputs) and return the output of ``graph.target``.

        ``runs`` is what each task is called with: the runs of a combined
        graph (``pipeline/combined.py``); a task's own is ``runs[task.run]``."""
        ...


NAMES = ("local", "ray")


def executor_for(name: str, address: str | None = None, *, fresh: bool = False, artifacts: str = "shared") -> Executor:
    """The executor called ``name``; a UserError for an unknown name, for
    ``--address`` or ``--artifacts object-store`` without Ray, for an unknown
    artifact mode, for Ray when it is not installed, and for ``--fresh`` on
    Ray (workers share the cache: clear it instead)."""
    from probebench.executors.object_store import MODES

    if name not in NAMES:
        raise UserError(f"unknown executor {name!r}; use one of {', '.join(NAMES)} (--executor or PROBEBENCH_EXECUTOR)")
    if artifacts not in MODES:
        raise UserError(
            f"unknown artifact mode {artifacts!r}; use one of {', '.join(MODES)} (--artifacts or PROBEBENCH_RAY_ARTIFACTS)"
        )
    if name == "local":
        if address:
            raise UserError("--address (PROBEBENCH_RAY_ADDRESS) names a Ray cluster; add --executor ray")
        if artifacts != "shared":
            raise UserError(
                "--artifacts (PROBEBENCH_RAY_ARTIFACTS) says how Ray workers share artifacts; add --executor ray"
            )
        from probebench.executors.local import LocalExecutor

        return LocalExecutor()
    from probebench.executors.ray_cluster import RayExecutor, import_ray

    if fresh:
        raise UserError(
            "--fresh cannot be used with --executor ray (its workers share the cache); "
            "use a new --cache-dir, or `probebench cache` to clear the old one"
        )
    import_ray()
    return RayExecutor(address, artifacts=artifacts)
