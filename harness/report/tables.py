"""Render a pivot of results as a rich table, markdown or CSV.

Column headers carry an arrow for the metric's direction (↑ higher is better,
↓ lower is better) and the best value per column is marked in bold (rich) or
with ``**`` (markdown).
"""

from __future__ import annotations

FORMATS = ("table", "markdown", "csv")


def _header(col, directions: dict[str, bool]) -> str:
    parts = col if isinstance(col, tuple) else (col,)
    text = " ".join(str(p) for p in parts)
    metric = next((p for p in parts if p in directions), None)
    if metric is not None:
        text += " ↑" if directions[metric] else " ↓"
    return text


def _best_rows(numbers, directions: dict[str, bool]) -> dict:
    """For each column, the index label of the best value (by the metric's direction)."""
    best = {}
    for col in numbers.columns:
        parts = col if isinstance(col, tuple) else (col,)
        metric = next((p for p in parts if p in directions), None)
        series = numbers[col].dropna()
        if metric is None or len(series) < 2:
            continue
        best[col] = series.idxmax() if directions[metric] else series.idxmin()
    return best


def _row_label(index) -> str:
    return " / ".join(str(i) for i in index) if isinstance(index, tuple) else str(index)


def render(numbers, labels, directions: dict[str, bool], fmt: str = "table", title: str = ""):
    """A rich Table (fmt 'table') or a string (markdown, csv)."""
    if fmt == "csv":
        flat = numbers.copy()
        flat.columns = [_header(c, {}) for c in flat.columns]
        return flat.to_csv(float_format="%.6g")
    best = _best_rows(numbers, directions)
    index_name = " / ".join(str(n) for n in numbers.index.names)
    headers = [index_name] + [_header(c, directions) for c in numbers.columns]
    body = []
    for idx in numbers.index:
        cells = []
        for col in numbers.columns:
            text = labels.loc[idx, col]
            text = "" if text != text else str(text)  # NaN -> empty
            if best.get(col) == idx:
                text = f"[bold]{text}[/]" if fmt == "table" else f"**{text}**"
            cells.append(text)
        body.append([_row_label(idx)] + cells)
    if fmt == "markdown":
        lines = ([f"**{title}**", ""] if title else []) + [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---" for _ in headers) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines) + "\n"
    from rich.table import Table

    table = Table(*headers, title=title or None, title_justify="left", min_width=len(title) + 4)
    for row in body:
        table.add_row(*row)
    return table
