"""One rich console on stderr for progress and messages, so bars are not torn."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

console = Console(stderr=True, highlight=False)
_live: Progress | None = None  # the one rich Progress on screen; nested stages add tasks to it


class Advance(Protocol):
    def __call__(self, n: int = 1) -> None: ...


HEARTBEAT_SECONDS = 30.0  # plain mode: a progress line at least this often during a long stage
_plain: list[PlainTask] = []  # plain mode: the open stages, innermost last


@contextmanager
def task(description: str, total: int | None) -> Iterator[Advance]:
    """Progress for one piece of work; yields ``advance(n=1)``.

    In a terminal: a rich bar with elapsed time and ETA; nested calls share one
    live display (rich allows only one), each adding its own bar and removing
    it when done. Otherwise (a CI log, a pipe): one plain line when the stage
    starts and one when it ends, and a heartbeat line with done/total and an
    ETA every ``$PROBEBENCH_HEARTBEAT`` seconds (default 30) while it runs.
    ``running(text)`` names what the innermost stage is doing now.
    """
    if not console.is_terminal:
        with _plain_task(description, total) as advance:
            yield advance
        return
    global _live
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = _live
    owner = bar is None
    if bar is None:
        bar = _live = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        bar.start()
    task_id = bar.add_task(description, total=total)
    _rich_tasks.append((task_id, description))

    def advance_bar(n: int = 1) -> None:
        bar.advance(task_id, n)

    try:
        yield advance_bar
    finally:
        _rich_tasks.pop()
        bar.remove_task(task_id)
        if owner:
            bar.stop()
            _live = None


_rich_tasks: list[tuple[Any, str]] = []  # terminal mode: (task id, description) of the open bars, innermost last


def running(text: str) -> None:
    """Name what the innermost stage is doing now (e.g. the scorer it runs):
    shown in its bar, and in plain mode in its heartbeat lines."""
    if _plain:
        _plain[-1].running = text
    elif _live is not None and _rich_tasks:
        task_id, description = _rich_tasks[-1]
        _live.update(task_id, description=f"{description} · {text}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else (f"{seconds // 60}:{seconds % 60:02d}")
    )


@dataclass
class PlainTask:
    """One stage in plain mode: its counts, for the heartbeat."""

    description: str
    total: int | None
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    running: str = ""

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        text = f"{self.description}: {self.done}/{self.total if self.total is not None else '?'}"
        if self.total and self.done:
            remaining = elapsed / self.done * (self.total - self.done)
            text += f" ({100 * self.done / self.total:.0f}%), {_duration(elapsed)} elapsed, eta {_duration(remaining)}"
        else:
            text += f", {_duration(elapsed)} elapsed"
        return text + (f", running {self.running}" if self.running else "")


@contextmanager
def _plain_task(description: str, total: int | None) -> Iterator[Advance]:
    import os
    import threading

    state = PlainTask(description, total)
    _plain.append(state)
    every = float(os.environ.get("PROBEBENCH_HEARTBEAT") or HEARTBEAT_SECONDS)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(every):
            console.print(f"… {state.line()}", soft_wrap=True, highlight=False, markup=False)

    counts = f" ({total} steps)" if total is not None else ""
    console.print(f"start {description}{counts}", soft_wrap=True, markup=False)
    thread = threading.Thread(target=heartbeat, name=f"heartbeat {description}", daemon=True)
    thread.start()

    def advance(n: int = 1) -> None:
        state.done += n

    failed = True
    try:
        yield advance
        failed = False
    finally:
        stop.set()
        thread.join()
        _plain.pop()
        elapsed = _duration(time.monotonic() - state.started)
        end = "stopped" if failed else "done"
        shown = f"{state.done}/{total}" if total is not None else f"{state.done}"
        console.print(f"{end} {description}: {shown} in {elapsed}", soft_wrap=True, markup=False)
