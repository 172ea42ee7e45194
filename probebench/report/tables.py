"""Render pivots of results as a rich table, markdown, CSV, HTML or LaTeX.

Column headers carry an arrow for the metric's direction (↑ higher is better,
↓ lower is better) and the factor of scaled metrics (``aurc ×1000``); the best
value per column (per row when metrics are the rows) and every value tied
with it is marked: bold in rich, ``**`` in markdown, ``<strong>`` in HTML,
``\\textbf`` in LaTeX. Which values are tied is decided in one place,
``probebench/report/ties.py`` (a section's ``marked``; without it, the
interval-overlap fallback). Numbers stay numbers until here: ``labels`` holds
the formatted text, ``numbers`` the values the best mark is chosen by,
``stats`` their intervals.
"""

from __future__ import annotations

import html as _html
from collections.abc import Callable, Hashable, Iterator, Sequence
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
    marked: set[tuple[Hashable, Hashable]] | None = None  # cells to bold (ties.Ties); None: ties.overlap_cells
    # {field: DataFrame of the same shape} for results.PIVOT_FIELDS (std, seeds, ci_low, ci_high)
    stats: dict[str, pd.DataFrame] = field(default_factory=dict)

    @classmethod
    def of(cls, title: str, frames: dict[str, pd.DataFrame], caption: str = "", metric: str | None = None) -> Section:
        """A section from ``results.pivot_fields``."""
        return cls(title, frames["value"], frames["label"], caption=caption, metric=metric, stats=frames)

    def has_brackets(self) -> bool:
        """Whether any cell shows a bootstrap interval ('v [lo, hi]')."""
        return any("[" in str(text) for text in self.labels.to_numpy().ravel())

    def without_intervals(self) -> Section:
        """The same section with each label reduced to its value (``--no-intervals``)."""
        labels = self.labels.map(lambda t: t.partition(" ")[0] if isinstance(t, str) else t)
        return Section(
            self.title, self.numbers, labels, self.caption, self.metric, list(self.notes), self.marked, self.stats
        )


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


def lines(
    numbers: pd.DataFrame, directions: Directions, metric: str | None = None
) -> Iterator[tuple[list[tuple[Hashable, Hashable]], pd.Series, str]]:
    """The lines a best value is chosen in: each column, or each row when the
    metrics are the rows. Yields (the (row, column) positions of its finite
    values, those values, the metric), for lines of at least two values."""
    import numpy as np

    metric_in_rows = metric is None and any(_metric_of(i, directions) for i in numbers.index)
    for line in numbers.index if metric_in_rows else numbers.columns:
        series = (numbers.loc[line] if metric_in_rows else numbers[line]).astype(float)
        series = series[np.isfinite(series)]
        name = metric or _metric_of(line, directions)
        if name is None or len(series) < 2:
            continue
        positions = [(line, other) if metric_in_rows else (other, line) for other in series.index]
        yield positions, series, name


def shown_intervals(section: Section) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(lows, highs) of the interval each cell shows (``results.shown_interval``)."""
    import numpy as np
    import pandas as pd

    from probebench.results import shown_interval

    numbers = section.numbers.astype(float)
    nan = numbers * np.nan
    stats = {k: section.stats.get(k, nan) for k in ("std", "seeds", "ci_low", "ci_high")}
    low, high = shown_interval(numbers, stats["std"], stats["seeds"], stats["ci_low"], stats["ci_high"])
    frame = lambda values: pd.DataFrame(values, index=numbers.index, columns=numbers.columns)  # noqa: E731
    return frame(low), frame(high)


def best_cells(section: Section, directions: Directions) -> set[tuple[Hashable, Hashable]]:
    """(row, column) positions to bold: ``section.marked`` when the tie rule
    (``probebench.report.ties.Ties``) decided them, else those tied with the
    best value of their column (row when the metrics are the rows) by the
    no-scores fallback ``ties.overlap_tied`` on the intervals the cells show."""
    if section.marked is not None:
        return section.marked
    from probebench.report.ties import overlap_cells

    return overlap_cells(section, directions)


def _row_label(index: Hashable) -> str:
    return " / ".join(str(i) for i in index) if isinstance(index, tuple) else str(index)


def _body(section: Section, directions: Directions, mark: Callable[[str], str]) -> list[tuple[str, list[str]]]:
    best = best_cells(section, directions)
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
    for column in table.columns:
        column.no_wrap = True  # a name or a value is never cut or wrapped: print_tables widens the console instead
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


def _latex_cell(text: str) -> str:
    """A value, bold when it starts with the mark, and its interval (if any) on
    a second, smaller line, so a column stays narrow enough for a page."""
    best = text.startswith("\0")
    value, _space, interval = text.removeprefix("\0").partition(" ")
    shown = r"\textbf{" + latex_escape(value) + "}" if best else latex_escape(value)
    if not interval:
        return shown
    return r"\begin{tabular}[t]{@{}r@{}}" + shown + r" \\ \scriptsize " + latex_escape(interval) + r"\end{tabular}"


def to_latex(section: Section, directions: Directions, scales: Scales | None = None) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``);
    intervals go on a second line of their cell."""
    headers = _headers(section, directions, scales)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\setlength{\tabcolsep}{4pt}",
        r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in headers) + r" \\",
        r"\midrule",
    ]
    for label, cells in _body(section, directions, lambda t: "\0" + t):
        lines.append(" & ".join([latex_escape(label)] + [_latex_cell(t) for t in cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    caption = _title(section, directions, scales) + (f". {section.caption}" if section.caption else "")
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


RECORD_FIELDS = ("value", "std", "seeds", "ci_low", "ci_high")


def section_records(section: Section, directions: Directions) -> list[dict[str, object]]:
    """One dict per shown cell: the section's row and column keys (and
    ``metric`` when it is fixed), then value, std (over seeds), seeds,
    ci_low, ci_high (bootstrap interval), and ``best`` (bold in the table).
    Numbers stay numbers; a missing one is None."""
    best = best_cells(section, directions)
    numbers = section.numbers
    row_names = [n or "row" for n in numbers.index.names]
    col_names = [n or "column" for n in numbers.columns.names]
    records: list[dict[str, object]] = []
    for idx in numbers.index:
        for col in numbers.columns:
            record: dict[str, object] = dict(zip(row_names, _parts(idx)))
            if numbers.columns.names != [None]:  # a real pivot key, not the lone 'value' column of a 1-D view
                record.update(zip(col_names, _parts(col)))
            if section.metric is not None:
                record["metric"] = section.metric
            for name in RECORD_FIELDS:
                frame = numbers if name == "value" else section.stats.get(name)
                raw = None if frame is None else frame.loc[idx, col]
                number = None if raw is None or raw != raw else float(raw)
                record[name] = int(number) if name == "seeds" and number is not None else number
            record["best"] = (idx, col) in best
            records.append({k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()})
    return records


def to_csv(sections: list[Section], directions: Directions, scales: Scales | None = None) -> str:
    """Every section as tidy rows (``section_records``) in one CSV, with a
    leading ``table`` column naming the section: one row per shown cell, its
    keys, value, std, seeds, ci_low, ci_high and best, nothing flattened into
    wide columns."""
    import pandas as pd

    from probebench.spreadsheet import safe_frame

    frames = [pd.DataFrame(section_records(section, directions)).assign(table=section.title) for section in sections]
    frame = pd.concat(frames, ignore_index=True)
    fields = [*RECORD_FIELDS, "best"]
    frame = frame[["table"] + [c for c in frame.columns if c not in ("table", *fields)] + fields]
    return safe_frame(frame).to_csv(index=False, float_format="%.6g")


def to_json(sections: list[Section], directions: Directions) -> list[dict[str, object]]:
    """Every section as a JSON-ready dict: title, caption, metric (when fixed),
    rows and cols (the pivot keys), and cells (``section_records``)."""
    out: list[dict[str, object]] = []
    for section in sections:
        out.append(
            {
                "title": section.title,
                "caption": section.caption,
                "metric": section.metric,
                "rows": [n for n in section.numbers.index.names if n is not None],
                "cols": [n for n in section.numbers.columns.names if n is not None],
                "cells": section_records(section, directions),
            }
        )
    return out


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
