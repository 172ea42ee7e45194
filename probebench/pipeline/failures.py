"""Which exceptions stop a run and which fail only one component.

A ``UserError`` is the user's to fix (a typo, a missing file, a bad option):
it stops the run with its one-line message. Anything else a component raises
fails only that component's cells: the failure is recorded, printed, and the
run goes on. ``CallInfo.from_call`` (after pytest's ``CallInfo``) is the one
place that draws this line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from probebench.console import console
from probebench.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class CallInfo(Generic[T]):
    """The outcome of calling a component: what it returned, or the ``error`` it raised."""

    _result: T | None
    error: Exception | None = None

    @property
    def result(self) -> T:
        """What the call returned; an AttributeError when it raised (see ``error``)."""
        if self.error is not None:
            raise AttributeError(f"the call raised {self.error!r}: it has no result")
        return cast(T, self._result)

    @classmethod
    def from_call(cls, call: Callable[[], T]) -> CallInfo[T]:
        """Call ``call()``; a UserError propagates, any other exception is kept in ``error``."""
        try:
            return cls(call())
        except UserError:
            raise
        except Exception as exc:
            return cls(None, exc)


@dataclass
class Failures:
    """The component failures of one run, as run.json records them."""

    entries: list[dict] = field(default_factory=list)

    def record(self, kind: str, label: str, stage: str, cell: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        self.add({"kind": kind, "plugin": label, "stage": stage, "cell": cell, "message": message})

    def add(self, entry: dict) -> None:
        """Record a failure (as ``record`` makes them), and print it."""
        self.entries.append(entry)
        console.print(
            f"[red]{entry['kind']} {entry['plugin']!r} failed in {entry['stage']} ({entry['cell']}): {entry['message']}[/]"
        )

    def call(self, call: Callable[[], T], kind: str, label: str, stage: str, cell: str) -> CallInfo[T]:
        """``CallInfo.from_call(call)``, with a failure recorded against (kind, label, stage, cell)."""
        info = CallInfo.from_call(call)
        if info.error is not None:
            self.record(kind, label, stage, cell, info.error)
        return info
