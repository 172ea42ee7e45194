"""Errors a user can act on. The CLI prints them as one line and exits 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: what is wrong, where, and how to fix it, in one line."""

    exit_code = 2


class PluginError(UserError):
    """A plugin could not be loaded or registered (named with its distribution)."""


class ComponentFailure(Exception):
    """A component failed while running one cell; the run records it and goes on."""


def suggest(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """' (did you mean 'x' or 'y'?)' for the closest candidates, or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
