"""Option checks the correctors share (no torch)."""

from __future__ import annotations

from probebench.errors import UserError


def require_count(corrector: str, key: str, value: object) -> int:
    """``value`` as an int >= 1, or a one-line UserError naming the corrector and option."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"corrector {corrector!r}: {key} must be an integer >= 1, got {value!r}")
    return value
