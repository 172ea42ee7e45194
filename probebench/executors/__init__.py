"""Executors: what runs a run's graph of stage tasks (``probebench.pipeline.graph``).

``local`` (the default) runs the tasks in this process, in the graph's
order; ``ray`` runs each as a Ray task on a cluster (``ray_cluster.py``).
An executor is any object with ``execute(graph, run) -> the target task's
output``; whichever runs a graph, the results are the same bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from probebench.errors import UserError

if TYPE_CHECKING:
    from probebench.pipeline.graph import Graph
    from probebench.pipeline.stage import Run


class Executor(Protocol):
    def execute(self, graph: Graph, run: Run) -> Any:
        """Run every task of ``graph`` (each after its inputs) and return the output of ``graph.target``."""
        ...


NAMES = ("local", "ray")


def executor_for(name: str, address: str | None = None, *, fresh: bool = False) -> Executor:
    """The executor called ``name``; a UserError for an unknown name, for
    ``--address`` without Ray, for Ray when it is not installed, and for
    ``--fresh`` on Ray (workers share the cache: clear it instead)."""
    if name not in NAMES:
        raise UserError(f"unknown executor {name!r}; use one of {', '.join(NAMES)} (--executor or PROBEBENCH_EXECUTOR)")
    if name == "local":
        if address:
            raise UserError("--address (PROBEBENCH_RAY_ADDRESS) names a Ray cluster; add --executor ray")
        from probebench.executors.local import LocalExecutor

        return LocalExecutor()
    from probebench.executors.ray_cluster import RayExecutor, import_ray

    if fresh:
        raise UserError(
            "--fresh cannot be used with --executor ray (its workers share the cache); "
            "use a new --cache-dir, or `probebench cache` to clear the old one"
        )
    import_ray()
    return RayExecutor(address)
