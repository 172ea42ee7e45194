"""Executors: what runs a run's graph of stage tasks (``probebench.pipeline.graph``).

``local`` (the default) runs the tasks in this process, in the graph's
order.
An executor is any object with ``execute(graph, run) -> the target task's
output``; whichever runs a graph, the results are the same bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from probebench.pipeline.graph import Graph
    from probebench.pipeline.stage import Run


class Executor(Protocol):
    def execute(self, graph: Graph, run: Run) -> Any:
        """Run every task of ``graph`` (each after its inputs) and return the output of ``graph.target``."""
        ...
