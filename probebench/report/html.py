"""A run as one self-contained HTML page: header, tables and plots, with every
image inlined as base64 so the file can be mailed or archived alone.

Sections (each a ``<section id=...>``, always present so a reader knows what
was looked for; a section without data says why):

``header``           run id, suite, versions, commit, machine, times, config hash, failures
``tables``           the classifier's accuracy and methods x metrics on the clean test data
                     (mean ± std over seeds, or bootstrap intervals for one seed);
                     methods x corruption and methods x severity when corruptions ran
``roc``              ROC curves of detecting misses
``risk-coverage``    selective risk vs coverage, with the perfect ranking
``accuracy-percentile`` accuracy after removing the p% least confident samples
``reliability``      reliability diagrams of the methods whose scores are probabilities
``corruptions``      heatmaps: AUROC per method x corruption, accuracy per corruption x severity
``counterfactuals``  every ``*.png`` in the run folder (correction grids, flow samples),
                     except the report's own ``report-*.png``
``suite``            the suite as resolved (JSON)
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from probebench import results
from probebench.errors import UserError
from probebench.evaluate import CLASSIFIER_METHOD
from probebench.report import curves, plots
from probebench.report import leaderboard as board
from probebench.report.tables import Directions, Scales, to_html

if TYPE_CHECKING:  # pandas stays out of CLI start-up
    import pandas as pd

    from probebench.results import Header

SCORE_KEYS = ("suite", "dataset", "corruption", "severity", "classifier", "seed", "index", "label", "prediction", "hit")
PLOT_PREFIX = "report-"  # --save-plots names; never mistaken for a counterfactual grid
SECTIONS = (
    "header",
    "tables",
    "roc",
    "risk-coverage",
    "accuracy-percentile",
    "reliability",
    "corruptions",
    "counterfactuals",
    "suite",
)

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table.results, table.header { border-collapse: collapse; margin: 0.8em 0; font-variant-numeric: tabular-nums; }
table.results th, table.results td, table.header th, table.header td { padding: 0.25em 0.7em; border-bottom: 1px solid #eee; }
table.results td { text-align: right; } table.results thead th { border-bottom: 2px solid #999; }
table.results caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
table.header th { text-align: left; color: #555; font-weight: 500; }
p.caption, p.note { color: #555; font-size: 0.92em; } p.missing { color: #a60; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.92em; }
img { max-width: 100%; } pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; }
nav a { margin-right: 0.8em; }
"""


@dataclass
class Plot:
    name: str
    png: bytes
    caption: str


def _img(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(plot.name)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(plot.caption)}</figcaption></figure>"
    )


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}">\n<h2>{html.escape(title)}</h2>\n{body}\n</section>\n'


def _missing(text: str) -> str:
    return f'<p class="missing">{html.escape(text)}</p>'


def load_scores(run: Path) -> pd.DataFrame | None:
    import pandas as pd

    from probebench.spreadsheet import unescape_frame

    path = run / "scores.csv.gz"
    if not path.is_file():
        return None
    return unescape_frame(pd.read_csv(path, keep_default_na=False, na_values=[""]))


def score_methods(scores: pd.DataFrame) -> list[str]:
    """Method columns of scores.csv.gz: every numeric column that is not a key."""
    import pandas as pd

    return [
        c
        for c in scores.columns
        if c not in SCORE_KEYS and pd.api.types.is_numeric_dtype(scores[c]) and scores[c].notna().any()
    ]


def pick_cell(scores: pd.DataFrame, corruption: str | None, severity: int | None) -> tuple[pd.DataFrame, str, int]:
    """The per-sample rows of one test cell (default: clean), all seeds."""

    wanted = corruption or results.CLEAN
    cell = scores[scores["corruption"].astype(str) == wanted]
    if cell.empty and corruption is None and len(scores):
        first = scores.iloc[0]
        wanted, severity = str(first["corruption"]), int(first["severity"])
        cell = scores[scores["corruption"].astype(str) == wanted]
    if cell.empty:
        known = ", ".join(sorted(scores["corruption"].astype(str).unique()))
        raise UserError(f"--corruption {wanted!r} is not in this run's scores; it has {known}")
    if severity is None:
        severity = int(cell["severity"].min())
    cell = cell[cell["severity"] == severity]
    if cell.empty:
        raise UserError(f"--severity {severity} is not in this run's scores for corruption {wanted!r}")
    first = cell.iloc[0]
    cell = cell[(cell["dataset"] == first["dataset"]) & (cell["classifier"] == first["classifier"])]
    return cell, wanted, severity


def _metric_means(table: pd.DataFrame, corruption: str, severity: int, metric: str) -> dict[str, float]:
    part = table[
        (table["corruption"].astype(str) == corruption) & (table["severity"] == severity) & (table["metric"] == metric)
    ]
    return part.groupby("method")["value"].mean().to_dict()


def _header_html(run: Path, head: Header, table: pd.DataFrame) -> str:
    suite = head.get("suite", {})
    machine = head.get("machine") or {}
    failures = head.get("failures") or []
    seeds = sorted(table["seed"].unique().tolist())
    fields = [
        ("run", run.name),
        ("suite", suite.get("name", "?")),
        ("description", suite.get("description", "")),
        ("dataset", (suite.get("dataset") or {}).get("label", "?")),
        ("classifier", (suite.get("classifier") or {}).get("label", "?")),
        ("seeds", ", ".join(map(str, seeds))),
        ("config hash", results.run_config(head)),
        ("probebench", head.get("probebench_version", "?")),
        ("git commit", head.get("git_commit") or "unknown"),
        ("torch", head.get("torch_version", "?")),
        ("python", head.get("python_version", "?")),
        ("machine", f"{machine.get('platform', '?')}, {machine.get('cpu_count', '?')} CPUs"),
        ("device", head.get("device", "?")),
        ("started", head.get("started", "?")),
        ("finished", head.get("finished", "?")),
        ("seconds", head.get("seconds", "?")),
        ("bootstrap", json.dumps(suite.get("bootstrap", {}))),
        ("failures", str(len(failures))),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in fields)
    out = f'<table class="header">{rows}</table>'
    if failures:
        items = "".join(
            f"<li>{html.escape(f['kind'])} {html.escape(f['plugin'])} in {html.escape(f['stage'])} "
            f"({html.escape(f['cell'])}): {html.escape(f['message'])}</li>"
            for f in failures
        )
        out += f"<p>Component failures:</p><ul>{items}</ul>"
    return out


def _tables_html(table: pd.DataFrame, heads: dict[str, Header], scales: Scales, directions: Directions) -> str:
    views = [("Clean test data", board.View(["method"], ["metric"], where={"corruption": [results.CLEAN]}))]
    if (table["corruption"] != results.CLEAN).any() and "auroc" in set(table["metric"]):
        views += [
            ("AUROC by corruption (mean over severities)", board.View(["method"], ["corruption"], ["auroc"])),
            ("AUROC by severity (mean over corruptions; 0 = clean)", board.View(["method"], ["severity"], ["auroc"])),
        ]
    out = []
    for title, view in views:
        if view.where and not (table["corruption"] == results.CLEAN).any():
            view.where = None
        for section in board.sections(table, view, heads, title=title):
            out.append(to_html(section, directions, scales))
    note = board.scaled_note(scales, table["metric"])
    if note:
        out.append(
            f'<p class="note">{html.escape(note)}; arrows: ↑ higher is better, ↓ lower is better; '
            "bold: best in its column.</p>"
        )
    return "\n".join(out)


def _corruption_plots(table: pd.DataFrame, directions: Directions) -> list[Plot]:
    if not (table["corruption"] != results.CLEAN).any():
        return []
    out = []
    methods = table[table["method"] != CLASSIFIER_METHOD]
    if "auroc" in set(methods["metric"]):
        part = methods[methods["metric"] == "auroc"]
        per_seed = part.groupby(["method", "corruption", "seed"], sort=False)["value"].mean()
        matrix = per_seed.groupby(["method", "corruption"], sort=False).mean().unstack("corruption")
        order = list(dict.fromkeys(part["corruption"]))
        matrix = matrix.reindex(index=list(dict.fromkeys(part["method"])), columns=order)
        columns = ["clean" if c == results.CLEAN else c for c in matrix.columns]
        fig = plots.heatmap_figure(
            matrix.to_numpy(),
            matrix.index,
            columns,
            "AUROC by method and corruption (mean over severities and seeds)",
            directions.get("auroc", True),
            xlabel="corruption",
            ylabel="method",
        )
        out.append(Plot("auroc-by-corruption", plots.png(fig), "AUROC of miss detection under each corruption."))
    acc = table[(table["method"] == CLASSIFIER_METHOD) & (table["metric"] == "accuracy")]
    if len(acc):
        matrix = acc.groupby(["corruption", "severity"], sort=False)["value"].mean().unstack("severity")
        matrix = matrix.reindex(index=list(dict.fromkeys(acc["corruption"])))
        fig = plots.heatmap_figure(
            matrix.to_numpy(),
            matrix.index,
            [f"severity {c}" for c in matrix.columns],
            "classifier accuracy by corruption and severity (mean over seeds)",
            True,
        )
        out.append(Plot("accuracy-by-corruption", plots.png(fig), "Top-1 accuracy of the classifier."))
    return out


def build(run: Path, corruption: str | None = None, severity: int | None = None, save_plots: Path | None = None) -> str:
    """The HTML page of ``run`` (a run folder)."""
    table, heads = results.combine([run])
    head = heads[run.name]
    directions = results.directions(head)
    scales = results.scales(head)
    suite_name = head.get("suite", {}).get("name", "?")
    body = {name: "" for name in SECTIONS}
    body["header"] = _header_html(run, head, table)
    body["tables"] = _tables_html(table, heads, scales, directions)
    plotted: list[Plot] = []

    scores = load_scores(run)
    if scores is None or scores.empty:
        for name in ("roc", "risk-coverage", "accuracy-percentile", "reliability"):
            body[name] = _missing("this run has no scores.csv.gz, so no curves can be drawn")
    else:
        cell, chosen, sev = pick_cell(scores, corruption, severity)
        methods = score_methods(cell)
        where = "clean test data" if chosen == results.CLEAN else f"{chosen}, severity {sev}"
        seeds = sorted(cell["seed"].unique().tolist())
        pooled = (
            f"{where}, {len(cell) // max(1, len(seeds))} samples, seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))}"
        )
        lines = pooled + (" (one line per seed)" if len(seeds) > 1 else "")
        if not methods:
            for name in ("roc", "risk-coverage", "accuracy-percentile", "reliability"):
                body[name] = _missing("no method has scores in this run")
        else:
            roc = Plot(
                "roc",
                plots.png(
                    plots.roc_figure(
                        cell, methods, _metric_means(table, chosen, sev, "auroc"), f"ROC of miss detection — {where}"
                    )
                ),
                f"Misses are the positives, flagged by low confidence; {lines}. The dashed line marks 95% "
                "of misses flagged (FPR@95TPR is where a curve crosses it).",
            )
            rc = Plot(
                "risk-coverage",
                plots.png(
                    plots.risk_coverage_figure(
                        cell, methods, _metric_means(table, chosen, sev, "aurc"), f"Risk-coverage — {where}"
                    )
                ),
                f"Accepting the most confident samples first; {lines}. Lower is better; the dashed curve is a "
                "perfect ranking of the same hits and misses (E-AURC is the area between).",
            )
            ap = Plot(
                "accuracy-percentile",
                plots.png(plots.accuracy_percentile_figure(cell, methods, f"Accuracy vs percentile — {where}")),
                f"Accuracy of the samples kept after removing the least confident p%; {lines}. "
                "'area' is the mean over p = 0..99.",
            )
            body["roc"], body["risk-coverage"], body["accuracy-percentile"] = _img(roc), _img(rc), _img(ap)
            plotted += [roc, rc, ap]
            probabilistic = [m for m in methods if curves.is_probability(cell[m].to_numpy(dtype=float))]
            if probabilistic:
                rel = Plot(
                    "reliability",
                    plots.png(
                        plots.reliability_figure(
                            cell, probabilistic, _metric_means(table, chosen, sev, "ece"), f"Reliability — {where}"
                        )
                    ),
                    f"Accuracy per confidence bin (15 equal-width bins, all seeds pooled) against the diagonal of "
                    f"perfect calibration; {pooled}. Only methods whose scores lie in [0, 1] are drawn: "
                    + ", ".join(probabilistic)
                    + ".",
                )
                body["reliability"] = _img(rel)
                plotted.append(rel)
            else:
                body["reliability"] = _missing(
                    "no method's scores lie in [0, 1], so none is a probability to calibrate"
                )
    heatmaps = _corruption_plots(table, directions)
    body["corruptions"] = "\n".join(_img(p) for p in heatmaps) or _missing("this run has no corrupted test data")
    plotted += heatmaps
    grids = sorted(p for p in run.rglob("*.png") if not p.name.startswith(PLOT_PREFIX))
    if grids:
        body["counterfactuals"] = "\n".join(_img(Plot(p.stem, p.read_bytes(), str(p.relative_to(run)))) for p in grids)
    else:
        body["counterfactuals"] = _missing("no images (*.png) in the run folder: no corrector or generator saved any")
    body["suite"] = f"<pre>{html.escape(json.dumps(head.get('suite', {}), indent=2, default=str))}</pre>"

    if save_plots is not None:
        from probebench.paths import safe_part

        save_plots.mkdir(parents=True, exist_ok=True)
        for plot in plotted:
            (save_plots / safe_part(f"{PLOT_PREFIX}{plot.name}.png")).write_bytes(plot.png)

    titles = {
        "header": "Run",
        "tables": "Results",
        "roc": "ROC curves",
        "risk-coverage": "Risk-coverage curves",
        "accuracy-percentile": "Accuracy vs percentile",
        "reliability": "Reliability diagram",
        "corruptions": "Corruptions",
        "counterfactuals": "Counterfactual grids",
        "suite": "Suite as resolved",
    }
    nav = " ".join(f'<a href="#{name}">{html.escape(titles[name])}</a>' for name in SECTIONS)
    sections = "".join(_section(name, titles[name], body[name]) for name in SECTIONS)
    title = html.escape(f"probebench report: {suite_name} — {run.name}")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<nav>{nav}</nav>\n{sections}"
        f'<p class="note">Written by <code>probebench report</code> from results.csv, run.json and '
        f"scores.csv.gz; every number can be recomputed from them.</p>\n</body>\n</html>\n"
    )
