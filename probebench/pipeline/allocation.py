"""Building a component's network: running out of memory is a user error.

An option such as ``width = 100000`` asks for a network larger than the
machine: torch raises ``RuntimeError`` ("DefaultCPUAllocator: not enough
memory", "can't allocate memory", CUDA's "out of memory") or Python a
``MemoryError``. ``building`` turns either into one line that names the
component and the options the suite gave it, before the work starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from probebench.errors import UserError
from probebench.suite import ComponentSpec

_OUT_OF_MEMORY = ("not enough memory", "can't allocate memory", "out of memory", "defaultcpuallocator")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (Python's or torch's)."""
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc).lower() for s in _OUT_OF_MEMORY)


@contextmanager
def building(kind: str, spec: ComponentSpec) -> Iterator[None]:
    """Run the block that builds ``spec``'s network; an allocation failure in
    it is a ``UserError`` saying which options to lower."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        given = ", ".join(f"{k} = {v!r}" for k, v in spec.options.items() if isinstance(v, (int, float)))
        hint = f"lower its size options ({given})" if given else "choose a smaller one"
        raise UserError(f"{kind} {spec.label!r} does not fit in memory when built; {hint}") from None
