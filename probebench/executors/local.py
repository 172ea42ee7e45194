"""The local executor: every task in this process, one after another, in the
graph's order; the fit tasks that have work first, in worker processes
beside each other (``workers.py``) when there are two or more of them and
torch has two or more threads."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from probebench.console import Advance, task

if TYPE_CHECKING:
    from probebench.pipeline.graph import Graph


class LocalExecutor:
    """Runs the tasks in the graph's (topological) order; a task's error
    propagates as it is, after the open progress bar says it stopped."""

    name = "local"

    def execute(self, graph: Graph, runs: Sequence[Any]) -> Any:
        """Run ``graph``; its tasks are called with ``runs`` (the runs of a
        graph from ``pipeline/combined.py``; a task's own is ``runs[task.run]``)."""
        from probebench.executors.workers import concurrent_fits, fit_in_workers

        outputs: dict[str, Any] = {}
        fitted = concurrent_fits(graph, runs)
        if fitted:
            fit_in_workers(fitted, runs)
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
                with torch_threads(item.threads):
                    outputs[item.id] = item.call(runs, *inputs)
                if group is not None:
                    bar, advance = bars[group]
                    if item.steps:
                        advance(item.steps)
                    left[group] -= 1
                    if not left[group]:
                        bar.close()
        return outputs[graph.target]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Within the block torch runs on ``threads`` threads (None: as it does)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
