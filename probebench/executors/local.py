"""The local executor: every task in this process, one after another, in the graph's order."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from probebench.console import Advance, task

if TYPE_CHECKING:
    from probebench.pipeline.graph import Graph
    from probebench.pipeline.stage import Run


class LocalExecutor:
    """Runs the tasks in the graph's (topological) order; a task's error
    propagates as it is, after the open progress bar says it stopped."""

    name = "local"

    def execute(self, graph: Graph, run: Run) -> Any:
        outputs: dict[str, Any] = {}
        groups = graph.groups()
        left = {name: tasks for name, (tasks, _) in groups.items()}
        with ExitStack() as stack:
            bars: dict[str, tuple[ExitStack, Advance]] = {}
            for item in graph:
                group = item.group
                if group is not None and group not in bars:
                    bar = ExitStack()
                    bars[group] = (bar, bar.enter_context(task(group, groups[group][1])))
                    stack.push(bar)  # closed (as stopped) should a task raise
                inputs = (outputs[i] for i in item.inputs)
                if item.id == graph.target:
                    inputs = (graph.public(i, outputs[i]) for i in item.inputs)
                outputs[item.id] = item.call(run, *inputs)
                if group is not None:
                    bar, advance = bars[group]
                    if item.steps:
                        advance(item.steps)
                    left[group] -= 1
                    if not left[group]:
                        bar.close()
        return outputs[graph.target]
