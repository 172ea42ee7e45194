"""A run as one self-contained HTML page: header, tables and figures, with every
image inlined as base64 so the file can be mailed or archived alone; and each
figure of the report also as a file (PNG, plus PDF and SVG with ``vector``)
named by its section, for a paper.

Sections (each a ``<section id=...>`` with a caption under every figure,
always present so a reader knows what was looked for; a section without data
says why):

``header``                 run id, suite, versions, commit, machine, times, config hash, failures
``tables``                 the classifier's accuracy and methods x metrics on the clean test data
                           (mean ± std over seeds, or bootstrap intervals for one seed);
                           methods x corruption and methods x severity when corruptions ran
``roc``                    ROC curves of detecting misses
``risk-coverage``          selective risk vs coverage, with the perfect ranking
``accuracy-percentile``    accuracy after removing the p% least confident samples
``reliability``            reliability diagrams of the methods whose scores are probabilities
``auroc-by-corruption``    heatmap: AUROC per method x corruption
``accuracy-by-corruption`` heatmap: classifier accuracy per corruption x severity
``corrections``            the correctors' grids of corrected misses (``corrections/*_grid.png``)
``generators``             the generators' samples and reconstructions (``*-samples.png``,
                           ``*-reconstructions.png``) and any other image of the run folder
``active``                 the active-learning loop: learning curve (accuracy vs labels per
                           strategy, seeds as a band), its tables, grids of acquired generated
                           images (``active/*_grid.png``)
``suite``                  the suite as resolved, as TOML, collapsed

The clean test cell is called ``clean`` everywhere in the report (it is
stored as ``corruption = "none"``).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probebench import results
from probebench.errors import UserError
from probebench.evaluate import CLASSIFIER_METHOD
from probebench.report import curves, plots, toml
from probebench.report import leaderboard as board
from probebench.report.tables import Directions, Scales, to_html

if TYPE_CHECKING:  # pandas and matplotlib stay out of CLI start-up
    import pandas as pd
    from matplotlib.figure import Figure

    from probebench.report.ties import Ties
    from probebench.results import Header

SCORE_KEYS = ("suite", "dataset", "corruption", "severity", "classifier", "seed", "index", "label", "prediction", "hit")
FIGURES_SUFFIX = "-figures"  # <report stem>-figures/<section>.png; never mistaken for a run's own image
LEGACY_PREFIX = "report-"  # --save-plots names of earlier versions
CLEAN_LABEL = "clean"
VECTOR_FORMATS = ("pdf", "svg")
TITLES = {
    "header": "Run",
    "tables": "Results",
    "roc": "ROC curves",
    "risk-coverage": "Risk-coverage curves",
    "accuracy-percentile": "Accuracy vs percentile",
    "reliability": "Reliability diagrams",
    "auroc-by-corruption": "AUROC by corruption",
    "accuracy-by-corruption": "Accuracy by corruption and severity",
    "corrections": "Corrected misses",
    "generators": "Generator samples and reconstructions",
    "active": "Active learning",
    "suite": "Suite as resolved",
}
SECTIONS = tuple(TITLES)
CURVES = ("roc", "risk-coverage", "accuracy-percentile", "reliability")

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; overflow-wrap: anywhere; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table.results, table.header { border-collapse: collapse; margin: 0.8em 0; font-variant-numeric: tabular-nums; }
table.results th, table.results td, table.header th, table.header td { padding: 0.25em 0.6em; border-bottom: 1px solid #eee; }
table.results td { text-align: right; white-space: nowrap; line-height: 1.2; }
table.results td .ci { display: block; color: #888; font-size: 0.78em; }
table.results thead th { border-bottom: 2px solid #999; }
table.results caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; white-space: nowrap; }
table.header th { text-align: left; color: #555; font-weight: 500; } table.header td { overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
p.caption, p.note { color: #555; font-size: 0.92em; } p.missing { color: #a60; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.92em; }
img { max-width: 100%; height: auto; } pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; }
details summary { cursor: pointer; color: #555; }
nav a { margin-right: 0.8em; white-space: nowrap; }
"""


@dataclass
class Plot:
    """One figure: its file name (without extension), caption and PNG; ``figure``
    is the matplotlib figure when the report drew it (for vector output)."""

    name: str
    png: bytes
    caption: str
    figure: Figure | None = None


def _drawn(name: str, figure: Figure, caption: str) -> Plot:
    return Plot(name, plots.png(figure), caption, figure)


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


def cell_label(corruption: Any) -> str:
    """The one word the report uses for a test cell's corruption."""
    return CLEAN_LABEL if str(corruption) == results.CLEAN else str(corruption)


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
        ("classes", ", ".join((head.get("data") or {}).get("classes") or []) or "numbered 0..K-1"),
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


def _tables_html(
    table: pd.DataFrame, heads: dict[str, Header], scales: Scales, directions: Directions, ties: Ties | None = None
) -> str:
    table = table.assign(corruption=table["corruption"].map(cell_label))
    from probebench.report.studies import study_views

    out = []
    for title, view in study_views(table, CLEAN_LABEL):
        for section in board.sections(table, view, heads, title=title, ties=ties):
            out.append(f'<div class="scroll">{to_html(section, directions, scales)}</div>')
    note = board.scaled_note(scales, table["metric"])
    if note:
        out.append(
            f'<p class="note">{html.escape(note)}; arrows: ↑ higher is better, ↓ lower is better; '
            "bold: best in its column, and tied with it where the note under a table says so.</p>"
        )
    return "\n".join(out)


def _corruption_plots(table: pd.DataFrame, directions: Directions) -> dict[str, Plot]:
    if not (table["corruption"] != results.CLEAN).any():
        return {}
    out = {}
    methods = table[table["method"] != CLASSIFIER_METHOD]
    if "auroc" in set(methods["metric"]):
        part = methods[methods["metric"] == "auroc"]
        per_seed = part.groupby(["method", "corruption", "seed"], sort=False)["value"].mean()
        matrix = per_seed.groupby(["method", "corruption"], sort=False).mean().unstack("corruption")
        order = list(dict.fromkeys(part["corruption"]))
        matrix = matrix.reindex(index=list(dict.fromkeys(part["method"])), columns=order)
        fig = plots.heatmap_figure(
            matrix.to_numpy(),
            matrix.index,
            [cell_label(c) for c in matrix.columns],
            "AUROC of miss detection by method and corruption",
            directions.get("auroc", True),
            xlabel="corruption",
            ylabel="method",
        )
        out["auroc-by-corruption"] = _drawn(
            "auroc-by-corruption",
            fig,
            "AUROC of detecting the classifier's misses, per method (rows) and corruption (columns), the mean "
            "over severities and seeds; green is better.",
        )
    acc = table[(table["method"] == CLASSIFIER_METHOD) & (table["metric"] == "accuracy")]
    if len(acc):
        matrix = acc.groupby(["corruption", "severity"], sort=False)["value"].mean().unstack("severity")
        matrix = matrix.reindex(index=list(dict.fromkeys(acc["corruption"])))
        fig = plots.heatmap_figure(
            matrix.to_numpy(),
            [cell_label(c) for c in matrix.index],
            [f"severity {c}" for c in matrix.columns],
            "Classifier accuracy by corruption and severity",
            True,
            xlabel="severity",
            ylabel="corruption",
        )
        out["accuracy-by-corruption"] = _drawn(
            "accuracy-by-corruption",
            fig,
            "Top-1 accuracy of the classifier per corruption (rows) and severity (columns; 0 = clean), the mean "
            "over seeds.",
        )
    return out


def _curve_plots(
    table: pd.DataFrame, scores: pd.DataFrame, corruption: str | None, severity: int | None, log_risk: bool
) -> tuple[dict[str, Plot], dict[str, str]]:
    """The curve figures of one test cell, and why any is missing."""
    cell, chosen, sev = pick_cell(scores, corruption, severity)
    methods = score_methods(cell)
    if not methods:
        return {}, dict.fromkeys(CURVES, "no method has scores in this run")
    styles = plots.method_styles(score_methods(scores))  # every method of the run: the same style in each figure
    where = "clean test data" if chosen == results.CLEAN else f"{chosen}, severity {sev}"
    seeds = sorted(cell["seed"].unique().tolist())
    pooled = (
        f"{where}, {len(cell) // max(1, len(seeds))} samples, seed{'s' if len(seeds) > 1 else ''} "
        f"{', '.join(map(str, seeds))}"
    )
    lines = pooled + (" (one line per seed)" if len(seeds) > 1 else "")
    means = lambda metric: _metric_means(table, chosen, sev, metric)  # noqa: E731
    out = {
        "roc": _drawn(
            "roc",
            plots.roc_figure(cell, methods, means("auroc"), f"ROC of miss detection — {where}", styles),
            f"Misses are the positives, flagged by low confidence; {lines}. The dashed line marks 95% "
            "of misses flagged (FPR@95TPR is where a curve crosses it).",
        ),
        "risk-coverage": _drawn(
            "risk-coverage",
            plots.risk_coverage_figure(cell, methods, means("aurc"), f"Risk-coverage — {where}", styles, log_risk),
            f"Accepting the most confident samples first; {lines}. Lower is better; the dashed curve is a "
            "perfect ranking of the same hits and misses (E-AURC is the area between), the dotted line the risk "
            "of accepting everything. "
            + (
                "Logarithmic risk axis."
                if log_risk
                else "The risk axis ends at twice that risk: a curve above it ranks worse than chance there "
                "(--log-risk draws the whole range)."
            ),
        ),
        "accuracy-percentile": _drawn(
            "accuracy-percentile",
            plots.accuracy_percentile_figure(cell, methods, f"Accuracy vs percentile — {where}", styles),
            f"Accuracy of the samples kept after removing the least confident p%; {lines}. "
            "'area' is the mean over p = 0..99. The axis reaches as far below the accuracy of all samples "
            "as 1.0 is above it: a curve below it ranks worse than chance there.",
        ),
    }
    missing = {}
    probabilistic = [m for m in methods if curves.is_probability(cell[m].to_numpy(dtype=float))]
    if probabilistic:
        out["reliability"] = _drawn(
            "reliability",
            plots.reliability_figure(cell, probabilistic, means("ece"), f"Reliability — {where}"),
            f"Accuracy per confidence bin (15 equal-width bins, all seeds pooled) against the diagonal of "
            f"perfect calibration, bin counts below on one scale for all panels; {pooled}. Only methods whose "
            "scores lie in [0, 1] are drawn: " + ", ".join(probabilistic) + ".",
        )
    else:
        missing["reliability"] = "no method's scores lie in [0, 1], so none is a probability to calibrate"
    return out, missing


def _active_html(run: Path, suite_name: str, drawn: dict[str, Plot], grids: list[Plot]) -> str:
    """The learning curve, the active-learning tables and the acquired-image grids (drawn into ``drawn``)."""
    from probebench.report import active

    table = active.load([run])
    if table is None:
        return _missing(f"this run has no {active.TABLE}: its suite has no active-learning loop (an 'active' table)")
    figure = active.learning_curve_figure(table, f"{suite_name}: test accuracy vs labelled images")
    drawn["learning-curve"] = _drawn(
        "learning-curve",
        figure,
        "Test accuracy after each round against the labelled images it was trained on, one line per strategy "
        "(mean over seeds; the band spans the lowest to the highest seed).",
    )
    tables = f"<pre>{html.escape(active.markdown(table, active.load_hits([run])))}</pre>"
    return _img(drawn["learning-curve"]) + tables + "\n".join(map(_img, grids))


def _is_report_output(path: Path, run: Path) -> bool:
    parts = path.relative_to(run).parts
    return path.name.startswith(LEGACY_PREFIX) or any(p.endswith(FIGURES_SUFFIX) for p in parts[:-1])


def _run_image_caption(path: Path, run: Path) -> tuple[str, str]:
    """(section, caption) of an image a run saved, from its name (the names
    pipeline.correct and pipeline.generate give them)."""
    relative = str(path.relative_to(run))
    if path.parent.name == "active" and path.stem.endswith("_grid"):
        return "active", (
            f"{path.stem.removesuffix('_grid')}: generated images of its first acquisition, each captioned "
            f"oracle label / label of its source pool image (red: they differ). File: {relative}."
        )
    if path.parent.name == "corrections" and path.stem.endswith("_grid"):
        method = path.stem.removesuffix("_grid")
        return "corrections", (
            f"{method}: misses it corrected. Rows: the original test image, the edited image, and the edit "
            f"x' − x (red added, blue removed, scaled per column); labels above give the prediction before and "
            f"after. File: {relative}."
        )
    if path.stem.endswith("-samples"):
        return "generators", (
            f"{path.stem.removesuffix('-samples')}: 64 samples of the generator, temperature 1.0 (top four rows) "
            f"and 0.7 (bottom four). File: {relative}."
        )
    if path.stem.endswith("-reconstructions"):
        return "generators", (
            f"{path.stem.removesuffix('-reconstructions')}: test images (odd rows) each followed by "
            f"decode(encode(x)) (even rows). File: {relative}."
        )
    if path.stem.endswith("-counterfactuals"):
        return "generators", (
            f"{path.stem.removesuffix('-counterfactuals')}: counterfactuals of a self-training classifier (cf-gan): "
            f"two test images per class (rows), each followed by G(x, c) for class c = 0, 1, ... File: {relative}."
        )
    if path.stem.endswith("-saliency"):
        return "generators", (
            f"{path.stem.removesuffix('-saliency')}: saliency |x − G(x, c)| of the same rows (white: the most "
            f"changed pixel of each tile, scaled per tile). File: {relative}."
        )
    return "generators", f"An image the run saved: {relative}."


def _run_images(run: Path) -> dict[str, list[Plot]]:
    found: dict[str, list[Plot]] = {"corrections": [], "generators": [], "active": []}
    for path in sorted(run.rglob("*.png")):
        if not _is_report_output(path, run):
            section, caption = _run_image_caption(path, run)
            found[section].append(Plot(path.stem, path.read_bytes(), caption))
    return found


def figures_dir(report: Path) -> Path:
    """Where the report's figures go: ``<report stem>-figures/`` beside it."""
    return report.with_name(report.stem + FIGURES_SUFFIX)


def save_figures(figures: list[Plot], folder: Path, vector: bool) -> list[Path]:
    """Each drawn figure as ``<section>.png`` (and ``.pdf``, ``.svg`` with
    ``vector``) in ``folder``; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for plot in figures:
        target = folder / f"{plot.name}.png"
        target.write_bytes(plot.png)
        written.append(target)
        if vector and plot.figure is not None:
            for fmt in VECTOR_FORMATS:
                target = folder / f"{plot.name}.{fmt}"
                plot.figure.savefig(target, format=fmt)
                written.append(target)
    return written


@dataclass
class Report:
    """The page and the figures the report drew (open until ``close``)."""

    page: str
    figures: list[Plot]

    def close(self) -> None:
        for plot in self.figures:
            if plot.figure is not None:
                plots.close(plot.figure)


def build(
    run: Path,
    corruption: str | None = None,
    severity: int | None = None,
    log_risk: bool = False,
    ties: Ties | None = None,
) -> Report:
    """The HTML page of ``run`` (a run folder) and its figures; ``ties`` marks
    tied-best values in its tables (else only the best)."""
    table, heads = results.combine([run])
    head = heads[run.name]
    directions = results.directions(head)
    scales = results.scales(head)
    suite_name = head.get("suite", {}).get("name", "?")
    body = {name: "" for name in SECTIONS}
    body["header"] = _header_html(run, head, table)
    body["tables"] = _tables_html(table, heads, scales, directions, ties)

    scores = load_scores(run)
    drawn: dict[str, Plot] = {}
    if scores is None or scores.empty:
        missing = dict.fromkeys(CURVES, "this run has no scores.csv.gz, so no curves can be drawn")
    else:
        drawn, missing = _curve_plots(table, scores, corruption, severity, log_risk)
    heatmaps = _corruption_plots(table, directions)
    drawn.update(heatmaps)
    for name in ("auroc-by-corruption", "accuracy-by-corruption"):
        if name not in heatmaps:
            missing[name] = "this run has no corrupted test data"
    for name in CURVES + ("auroc-by-corruption", "accuracy-by-corruption"):
        body[name] = _img(drawn[name]) if name in drawn else _missing(missing[name])
    images = _run_images(run)
    body["corrections"] = "\n".join(map(_img, images["corrections"])) or _missing(
        "no corrections/*_grid.png in the run folder: no corrector saved a grid of corrected misses"
    )
    body["generators"] = "\n".join(map(_img, images["generators"])) or _missing(
        "no generator samples (*-samples.png) or other images in the run folder"
    )
    body["active"] = _active_html(run, suite_name, drawn, images["active"])
    suite_toml = toml.dumps(head.get("suite", {}))
    body["suite"] = (
        f"<details><summary>The suite this run resolved ({suite_toml.count(chr(10))} lines of TOML; click to "
        f"open)</summary><pre>{html.escape(suite_toml)}</pre></details>"
    )

    nav = " ".join(f'<a href="#{name}">{html.escape(TITLES[name])}</a>' for name in SECTIONS)
    sections = "".join(_section(name, TITLES[name], body[name]) for name in SECTIONS)
    title = html.escape(f"probebench report: {suite_name} — {run.name}")
    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<nav>{nav}</nav>\n{sections}"
        f'<p class="note">Written by <code>probebench report</code> from results.csv, run.json and '
        f"scores.csv.gz; every number can be recomputed from them.</p>\n</body>\n</html>\n"
    )
    return Report(page, list(drawn.values()))
