"""CSV cells that a spreadsheet shows as text, never runs as a formula.

A label such as ``=HYPERLINK(...)`` in a CSV is a formula to Excel and
LibreOffice (CSV injection). Every CSV a user opens (results.csv, the header
of scores.csv.gz, ``leaderboard --format csv``) passes its text cells and
column names through :func:`escape`, which prefixes a ``'`` as OWASP
recommends; :func:`unescape` undoes it when probebench reads its own files.
Cells that already start with ``'`` are escaped too, so the two are exact
inverses. A lone character (the classifier's method ``-``) is no formula and
stays as it is; numbers (a negative value) are never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")


def escape(text: str) -> str:
    return "'" + text if len(text) > 1 and text.startswith(TRIGGERS) else text


def unescape(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(TRIGGERS) else text


def _map_frame(frame: pd.DataFrame, convert: Callable[[str], str]) -> pd.DataFrame:
    def cell(value: object) -> object:
        return convert(value) if isinstance(value, str) else value

    from pandas.api.types import is_numeric_dtype

    out = frame.rename(columns=cell)
    for column in out.columns:
        if not is_numeric_dtype(out[column]):  # text (object or pandas' str dtype); numbers stay as they are
            out[column] = out[column].map(cell)
    return out


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell and column name escaped (a copy)."""
    return _map_frame(frame, escape)


def unescape_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The inverse of :func:`safe_frame`, for reading probebench's own CSVs."""
    return _map_frame(frame, unescape)
