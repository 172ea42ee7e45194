"""The driver's view of a graph run by workers: per stage, tasks done,
running and failed, with an ETA. A live rich table in a terminal; otherwise
(a CI log, a pipe) a plain line when a stage finishes and a heartbeat line
every ``$PROBEBENCH_HEARTBEAT`` seconds (default 30)."""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from probebench.console import HEARTBEAT_SECONDS, _duration, console

if TYPE_CHECKING:
    from probebench.pipeline.graph import Graph


class StageProgress:
    """Counts per stage; ``started``/``finished`` as tasks go, ``close()`` at the end."""

    def __init__(self, graph: Graph, title: str) -> None:
        self.title = title
        self.total = Counter(t.stage for t in graph)
        self.done: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.began = time.monotonic()
        self.every = float(os.environ.get("PROBEBENCH_HEARTBEAT") or HEARTBEAT_SECONDS)
        self.last_line = self.began
        self.live: Any = None
        if console.is_terminal:
            from rich.live import Live

            self.live = Live(self._table(), console=console, transient=True, refresh_per_second=2)
            self.live.start()
        else:
            console.print(f"start {title} ({sum(self.total.values())} tasks)", soft_wrap=True, markup=False)

    def started(self, stage: str) -> None:
        self.running[stage] += 1
        self._show()

    def finished(self, stage: str, failed: bool = False) -> None:
        self.running[stage] -= 1
        self.done[stage] += 1
        self.failed[stage] += failed
        if self.live is None and self.done[stage] == self.total[stage]:
            console.print(f"{self.title}: {self.line(stage)}", soft_wrap=True, markup=False)
        self._show()

    def tick(self) -> None:
        """Called while waiting: a heartbeat line in plain mode when one is due."""
        self._show()

    def eta(self) -> str:
        finished, total = sum(self.done.values()), sum(self.total.values())
        if not finished:
            return "?"
        elapsed = time.monotonic() - self.began
        return _duration(elapsed / finished * (total - finished))

    def line(self, stage: str) -> str:
        text = f"{stage} {self.done[stage]}/{self.total[stage]} done"
        if self.running[stage]:
            text += f", {self.running[stage]} running"
        return text + (f", {self.failed[stage]} failed" if self.failed[stage] else "")

    def close(self, ok: bool) -> None:
        if self.live is not None:
            self.live.stop()
        elapsed = _duration(time.monotonic() - self.began)
        finished, total = sum(self.done.values()), sum(self.total.values())
        console.print(
            f"{'done' if ok else 'stopped'} {self.title}: {finished}/{total} tasks in {elapsed}",
            soft_wrap=True,
            markup=False,
        )

    def _show(self) -> None:
        if self.live is not None:
            self.live.update(self._table())
            return
        now = time.monotonic()
        if now - self.last_line >= self.every:
            self.last_line = now
            stages = "; ".join(self.line(s) for s in self.total)
            console.print(f"… {self.title}: {stages}; eta {self.eta()}", soft_wrap=True, markup=False)

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"{self.title} · eta {self.eta()}", title_justify="left", box=None)
        for column in ("stage", "done", "running", "failed", "total"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        for stage, total in self.total.items():
            table.add_row(stage, str(self.done[stage]), str(self.running[stage]), str(self.failed[stage]), str(total))
        return table
