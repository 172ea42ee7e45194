"""Several suites' runs as one graph, so one executor schedules them together.

``combine`` takes each run's graph (``graph.build_graph``) and makes one:
every task keeps its inputs, its id is prefixed with its suite's name (and
of several suites its progress group too, so bars do not mix them), and it remembers the
index of its run (``Task.run``). The executor is handed the runs, a
sequence, in place of one run: a combined task picks its own
(``runs[index]``) and calls the original task with it, so neither executor
needs to know whether it runs one suite or several. The one target calls
each suite's collector with that suite's inputs and returns their outputs,
in the runs' order; each run's failures stay its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from probebench.pipeline.graph import COLLECT, Graph, Task

if TYPE_CHECKING:
    from probebench.pipeline.stage import Run


def combine(graphs: Sequence[Graph], names: Sequence[str]) -> Graph:
    """One graph of ``graphs`` (each a run's, of the suite ``names[i]``), run with ``execute(graph, runs)``."""
    if len(set(names)) != len(names):
        raise ValueError(f"suite names repeat: {list(names)}")
    tasks: list[Task] = []
    targets: list[tuple[Callable[..., Any], int]] = []
    target_inputs: list[str] = []
    for index, (graph, name) in enumerate(zip(graphs, names, strict=True)):

        def renamed(task_id: str, name: str = name) -> str:
            return f"{name}:{task_id}"

        for task in graph:
            if task.id == graph.target:
                targets.append((task.call, len(task.inputs)))
                target_inputs += map(renamed, task.inputs)
                continue
            tasks.append(
                replace(
                    task,
                    id=renamed(task.id),
                    inputs=tuple(map(renamed, task.inputs)),
                    call=partial(in_run, index=index, call=task.call),
                    group=task.group if task.group is None or len(names) == 1 else f"{name}: {task.group}",
                    run=index,
                )
            )
    tasks.append(Task(COLLECT, COLLECT, tuple(target_inputs), partial(collect_each, targets=targets)))
    return Graph(tuple(tasks))


def in_run(runs: Sequence[Run], *inputs: Any, index: int, call: Callable[..., Any]) -> Any:
    """A task of run ``index``: ``call`` with that run."""
    return call(runs[index], *inputs)


def collect_each(runs: Sequence[Run], *outputs: Any, targets: list[tuple[Callable[..., Any], int]]) -> list[Any]:
    """Each run's collector on its own share of ``outputs`` (they come in the runs' order)."""
    collected, start = [], 0
    for index, (collect, count) in enumerate(targets):
        collected.append(collect(runs[index], *outputs[start : start + count]))
        start += count
    return collected
