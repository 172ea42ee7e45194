"""One rich console on stderr for progress and messages, so bars are not torn."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

console = Console(stderr=True, highlight=False)
_live: Progress | None = None  # the one rich Progress on screen; nested stages add tasks to it


class Advance(Protocol):
    def __call__(self, n: int = 1) -> None: ...


@contextmanager
def task(description: str, total: int | None) -> Iterator[Advance]:
    """A progress bar for one piece of work; yields ``advance(n=1)``.

    Nested calls share one live display (rich allows only one), each adding its
    own bar and removing it when done.
    """
    global _live
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = _live
    owner = bar is None
    if bar is None:
        bar = _live = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        bar.start()
    task_id = bar.add_task(description, total=total)

    def advance(n: int = 1) -> None:
        bar.advance(task_id, n)

    try:
        yield advance
    finally:
        bar.remove_task(task_id)
        if owner:
            bar.stop()
            _live = None
