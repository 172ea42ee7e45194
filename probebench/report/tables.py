"""Render pivots of results as a rich table, markdown, CSV, HTML or LaTeX.

Column headers carry an arrow for the metric's direction (↑ higher is better,
↓ lower is better) and the factor of scaled metrics (``aurc ×1000``); the best
value per column (per row when metrics are the rows) is marked: bold in rich,
``**`` in markdown, ``<strong>`` in HTML, ``\\textbf`` in LaTeX. Numbers stay
numbers until here: ``labels`` holds the formatted text, ``numbers`` the
values the best mark is chosen by.
"""

from __future__ import annotations

import html as _html
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, overload

if TYPE_CHECKING:  # pandas and rich stay out of CLI start-up
    import pandas as pd
    from rich.table import Table

Directions = dict[str, bool]  # {metric: higher_is_better}
Scales = dict[str, float]  # {metric: the factor its stored values are already multiplied by}

FORMATS = ("table", "markdown", "csv", "html", "latex")


@dataclass
class Section:
    """One table of a leaderboard or report: a pivot and the words around it."""

    title: str
    numbers: pd.DataFrame  # the values
    labels: pd.DataFrame  # of the same shape: the formatted text
    caption: str = ""
    metric: str | None = None  # the one metric every cell shows, when it is not a key
    notes: list[str] = field(default_factory=list)


def metric_label(metric: str, scales: Scales | None = None) -> str:
    scale = (scales or {}).get(metric, 1)
    return f"{metric} ×{scale:g}" if scale not in (1, 1.0, None) else metric


def _parts(key: Hashable) -> tuple[Hashable, ...]:
    return key if isinstance(key, tuple) else (key,)


def _metric_of(key: Hashable, directions: Directions) -> str | None:
    return next((p for p in _parts(key) if isinstance(p, str) and p in directions), None)


NUMBERED_KEYS = ("severity", "seed")  # keys whose bare values (0, 1, ...) need their name in a header


def _header(
    col: Hashable,
    directions: Directions,
    scales: Scales | None = None,
    arrows: bool = True,
    names: Sequence[str | None] = (),
) -> str:
    parts = _parts(col)
    names = list(names) + [None] * (len(parts) - len(names))
    metric = _metric_of(col, directions)
    text = " ".join(
        metric_label(str(p), scales) if p == metric else f"{name} {p}" if name in NUMBERED_KEYS else str(p)
        for p, name in zip(parts, names)
    )
    if metric is not None and arrows:
        text += " ↑" if directions[metric] else " ↓"
    return text


def _headers(section: Section, directions: Directions, scales: Scales | None) -> list[str]:
    names = section.numbers.columns.names
    return [_index_name(section.numbers)] + [
        _header(c, directions, scales, names=names) for c in section.numbers.columns
    ]


def best_cells(
    numbers: pd.DataFrame, directions: Directions, metric: str | None = None
) -> set[tuple[Hashable, Hashable]]:
    """(row, column) positions holding the best value of their column, or of
    their row when the metrics are the rows. Needs at least two values."""
    import numpy as np

    best: set[tuple[Hashable, Hashable]] = set()
    metric_in_rows = metric is None and any(_metric_of(i, directions) for i in numbers.index)
    lines = numbers.index if metric_in_rows else numbers.columns
    for line in lines:
        series = (numbers.loc[line] if metric_in_rows else numbers[line]).astype(float)
        series = series[np.isfinite(series)]
        name = metric or _metric_of(line, directions)
        if name is None or len(series) < 2:
            continue
        target = series.max() if directions[name] else series.min()
        for other in series.index[np.isclose(series.to_numpy(), target, rtol=0, atol=1e-12)]:
            best.add((line, other) if metric_in_rows else (other, line))
    return best


def _row_label(index: Hashable) -> str:
    return " / ".join(str(i) for i in index) if isinstance(index, tuple) else str(index)


def _body(section: Section, directions: Directions, mark: Callable[[str], str]) -> list[tuple[str, list[str]]]:
    best = best_cells(section.numbers, directions, section.metric)
    body = []
    for idx in section.numbers.index:
        cells = []
        for col in section.numbers.columns:
            text = section.labels.loc[idx, col]
            text = "" if text != text or text is None else str(text)  # NaN -> empty
            cells.append(mark(text) if (idx, col) in best and text else text)
        body.append((_row_label(idx), cells))
    return body


def _index_name(numbers: pd.DataFrame) -> str:
    return " / ".join(str(n) for n in numbers.index.names if n is not None)


def _title(section: Section, directions: Directions, scales: Scales | None) -> str:
    if section.metric and section.metric in directions:
        arrow = "↑" if directions[section.metric] else "↓"
        return f"{section.title} — {metric_label(section.metric, scales)} {arrow}"
    return section.title


# -- one format each -------------------------------------------------------------
def to_rich(section: Section, directions: Directions, scales: Scales | None = None) -> Table:
    from rich.table import Table

    headers = _headers(section, directions, scales)
    title = _title(section, directions, scales)
    table = Table(
        *headers,
        title=title or None,
        title_justify="left",
        min_width=len(title) + 4,
        caption=section.caption or None,
        caption_justify="left",
    )
    for label, cells in _body(section, directions, lambda t: f"[bold]{t}[/]"):
        table.add_row(_escape_rich(label), *cells)
    return table


def _escape_rich(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def to_markdown(section: Section, directions: Directions, scales: Scales | None = None) -> str:
    headers = _headers(section, directions, scales)
    title = _title(section, directions, scales)
    lines = ([f"**{title}**", ""] if title else []) + [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|",
    ]
    for label, cells in _body(section, directions, lambda t: f"**{t}**"):
        lines.append("| " + " | ".join([label] + cells) + " |")
    if section.caption:
        lines += ["", f"_{section.caption}_"]
    return "\n".join(lines) + "\n"


def to_html(section: Section, directions: Directions, scales: Scales | None = None) -> str:
    esc = _html.escape
    headers = _headers(section, directions, scales)
    out = ['<table class="results">']
    title = _title(section, directions, scales)
    if title:
        out.append(f"<caption>{esc(title)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>")
    out.append("<tbody>")
    for label, cells in _body(section, directions, lambda t: "\0" + t):
        row = [f"<th>{esc(label)}</th>"]
        for text in cells:
            best = text.startswith("\0")
            value, space, interval = text.removeprefix("\0").partition(" ")
            shown = f"<strong>{esc(value)}</strong>" if best else esc(value)
            # the interval in its own span: a stylesheet can put it under the value, in grey
            row.append(
                f'<td>{shown}<span class="ci">{space}{esc(interval)}</span></td>' if interval else f"<td>{shown}</td>"
            )
        out.append("<tr>" + "".join(row) + "</tr>")
    out.append("</tbody></table>")
    if section.caption:
        out.append(f'<p class="caption">{esc(section.caption)}</p>')
    return "\n".join(out) + "\n"


_LATEX_SPECIAL = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
    "±": r"$\pm$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "×": r"$\times$",
    "—": "---",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(section: Section, directions: Directions, scales: Scales | None = None) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    headers = _headers(section, directions, scales)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in headers) + r" \\",
        r"\midrule",
    ]
    for label, cells in _body(section, directions, lambda t: "\0" + t):
        rendered = [r"\textbf{" + latex_escape(t[1:]) + "}" if t.startswith("\0") else latex_escape(t) for t in cells]
        lines.append(" & ".join([latex_escape(label)] + rendered) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    caption = _title(section, directions, scales) + (f". {section.caption}" if section.caption else "")
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(sections: list[Section], directions: Directions, scales: Scales | None = None) -> str:
    """Every section's numbers (unformatted) in one rectangular CSV with a
    leading ``table`` column naming the section."""
    import pandas as pd

    frames = []
    for section in sections:
        flat = section.numbers.copy()
        flat.columns = [_header(c, directions, scales, arrows=False, names=flat.columns.names) for c in flat.columns]
        flat = flat.reset_index()
        flat.insert(0, "table", section.title)
        frames.append(flat)
    from probebench.spreadsheet import safe_frame

    return safe_frame(pd.concat(frames, ignore_index=True)).to_csv(index=False, float_format="%.6g")


@overload
def render_sections(
    sections: list[Section], directions: Directions, fmt: Literal["table"], scales: Scales | None = None
) -> list[Table]: ...
@overload
def render_sections(
    sections: list[Section],
    directions: Directions,
    fmt: Literal["markdown", "csv", "html", "latex"],
    scales: Scales | None = None,
) -> str: ...
@overload
def render_sections(
    sections: list[Section], directions: Directions, fmt: str, scales: Scales | None = None
) -> str | list[Table]: ...
def render_sections(
    sections: list[Section], directions: Directions, fmt: str, scales: Scales | None = None
) -> str | list[Table]:
    """A string (markdown, csv, html, latex) or a list of rich renderables (table)."""
    if fmt == "csv":
        return to_csv(sections, directions, scales)
    if fmt == "table":
        return [to_rich(s, directions, scales) for s in sections]
    one = {"markdown": to_markdown, "html": to_html, "latex": to_latex}[fmt]
    return "\n".join(one(s, directions, scales) for s in sections)


def render(
    numbers: pd.DataFrame,
    labels: pd.DataFrame,
    directions: Directions,
    fmt: str = "table",
    title: str = "",
    scales: Scales | None = None,
) -> str | Table:
    """One pivot as a rich Table (fmt 'table') or a string (the other formats)."""
    rendered = render_sections([Section(title, numbers, labels)], directions, fmt, scales)
    return rendered if isinstance(rendered, str) else rendered[0]
