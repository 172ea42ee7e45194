"""The HTML report: every section present, images inlined, the page parses;
and the curves it draws agree with the metrics."""

import base64

import numpy as np
import pytest
from fake_runs import make_run
from sklearn.metrics import roc_auc_score
from test_leaderboard import StrictParser

from probebench.cli import app
from probebench.report import curves
from probebench.report.html import SECTIONS

DRAWN = (
    "roc",
    "risk-coverage",
    "accuracy-percentile",
    "reliability",
    "auroc-by-corruption",
    "accuracy-by-corruption",
)


def parse(page: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert not parser.stack, f"unclosed tags {parser.stack}"
    return parser


def test_report_has_every_section_with_inlined_plots(runner, tmp_path):
    run = make_run(
        tmp_path / "results" / "run", seeds=(0, 1), corruptions=[("blur", [1, 2]), ("noise", [1])], pngs=1, n=150
    )
    (run / "corrections").mkdir()
    (run / "corrections" / "grid.png").write_bytes((run / "grid-0.png").read_bytes())
    (run / "corrections" / "prober-latent_grid.png").write_bytes((run / "grid-0.png").read_bytes())
    (run / "report-roc.png").write_bytes((run / "grid-0.png").read_bytes())  # an earlier --save-plots
    (run / "report-figures").mkdir()
    (run / "report-figures" / "roc.png").write_bytes((run / "grid-0.png").read_bytes())  # an earlier report
    out = tmp_path / "report.html"
    result = runner.invoke(
        app,
        [
            "report",
            "run",
            "--results-dir",
            str(tmp_path / "results"),
            "--out",
            str(out),
            "--corruption",
            "blur",
            "--severity",
            "2",
            "--vector",
        ],
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    parser = parse(page)
    assert set(SECTIONS) <= parser.ids
    # roc, risk-coverage, accuracy-percentile, reliability, 2 heatmaps, 3 images of the run
    assert len(parser.images) == 9
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in "".join(parser.images)
    for text in (
        "mnist-quick",
        "0123456789abcdef",
        "auroc ↑",
        "aurc ×1000 ↓",
        "AUROC by corruption",
        "corrections/grid.png",
        "grid-0.png",
        "prober-latent: misses it corrected",
        "mean ± std over seeds 0, 1",
        "blur, severity 2",
    ):
        assert text in page, text
    # the report's own figures are not images of the run
    assert "report-roc.png" not in page and "report-figures" not in page
    assert ">none<" not in page and "<th>clean</th>" in page  # the clean cell has one name: clean
    figures = {p.name for p in (tmp_path / "report-figures").iterdir()}
    assert figures == {f"{s}.{ext}" for s in DRAWN for ext in ("png", "pdf", "svg")}
    assert (tmp_path / "report-figures" / "roc.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in (tmp_path / "report-figures" / "roc.svg").read_bytes()[:1000]


def test_report_without_corruptions_or_grids_says_so(runner, tmp_path):
    make_run(tmp_path / "results" / "plain", n=120)
    result = runner.invoke(app, ["report", "latest", "--results-dir", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "results" / "plain" / "report.html").read_text()
    parser = parse(page)
    assert set(SECTIONS) <= parser.ids and len(parser.images) == 4
    assert "this run has no corrupted test data" in page and "no corrections/*_grid.png" in page


def test_report_of_a_cell_the_run_lacks(runner, tmp_path):
    make_run(tmp_path / "results" / "run", corruptions=[("blur", [1])], n=50)
    args = ["report", "run", "--results-dir", str(tmp_path / "results"), "--out", str(tmp_path / "r.html")]
    result = runner.invoke(app, args + ["--corruption", "fog"])
    assert result.exit_code == 2 and "'fog' is not in this run's scores" in result.output
    result = runner.invoke(app, args + ["--corruption", "blur", "--severity", "4"])
    assert result.exit_code == 2 and "--severity 4 is not in this run's scores" in result.output


@pytest.mark.parametrize("ties", [False, True])
def test_curves_agree_with_the_metrics(ties):
    from probebench.plugins.metrics.failure import AURC

    rng = np.random.default_rng(0)
    hit = rng.random(400) < 0.85
    confidence = rng.random(400) + 0.4 * hit
    if ties:
        confidence = np.round(confidence, 1)
    fpr, tpr = curves.roc(confidence, hit)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(~hit, -confidence), abs=1e-12)
    coverage, risk = curves.risk_coverage(confidence, hit)
    assert coverage[-1] == 1 and risk[-1] == pytest.approx(1 - hit.mean())
    if not ties:  # one point per sample: the mean of the curve is AURC
        assert 1000 * risk.mean() == pytest.approx(AURC()(confidence, hit), abs=1e-9)
    _percentiles, accuracy = curves.accuracy_vs_percentile(confidence, hit, [0, 50])
    assert accuracy[0] == pytest.approx(hit.mean())
    kept = confidence >= np.sort(confidence)[::-1][199]  # the 200 most confident, ties at the cut kept
    assert accuracy[1] == pytest.approx(hit[kept].mean())


def test_reliability_bins():
    confidence = np.array([0.05, 0.1, 0.95, 1.0, 0.0])
    hit = np.array([0, 1, 1, 1, 0])
    _centres, accuracy, mean_conf, count = curves.reliability(confidence, hit, bins=10)
    assert count.tolist() == [3, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert accuracy[0] == pytest.approx(1 / 3) and mean_conf[9] == pytest.approx(0.975)
    assert curves.is_probability(confidence) and not curves.is_probability(confidence - 0.5)


def test_suite_toml_reads_back_as_the_suite():
    import tomllib

    from fake_runs import suite_dict

    from probebench.report import toml

    suite = suite_dict(corruptions=[("blur", [1, 2])])
    suite["scorers"][0]["options"] = {"passes": 20, "layer": "fc_layer.4", "weird key": [0.5, 1e-3], "gone": None}
    suite["notes"] = {"quote": 'a "b"\nc', "empty": {}}

    def without_none(value):  # TOML has no null: such keys are left out
        if isinstance(value, dict):
            return {k: without_none(v) for k, v in value.items() if v is not None}
        return [without_none(v) for v in value] if isinstance(value, list) else value

    text = toml.dumps(suite)
    assert "gone" not in text and tomllib.loads(text) == without_none(suite)


def test_every_method_keeps_one_distinct_style():
    from probebench.report import plots

    methods = [f"method-{i}" for i in range(20)]
    styles = plots.method_styles(methods)
    pairs = {(s["color"], str(s["linestyle"])) for s in styles.values()}
    assert len(pairs) == 20  # no two of 20 methods look alike
    assert plots.method_styles(methods[:5]) == {m: styles[m] for m in methods[:5]}


def test_curve_axes_are_fitted_to_the_data():
    from probebench.report import plots

    run = make_run_scores(n=400)
    cell, methods = run
    fig = plots.risk_coverage_figure(cell, methods, {}, "t")
    error_rate = (cell["hit"] != 1).mean()
    assert fig.axes[0].get_ylim() == pytest.approx((0, 2 * error_rate))
    assert len(fig.legends) == 1 and not fig.axes[0].get_legend()  # the legend sits outside the axes
    plots.close(fig)
    fig = plots.risk_coverage_figure(cell, methods, {}, "t", log=True)
    assert fig.axes[0].get_yscale() == "log"
    plots.close(fig)
    fig = plots.reliability_figure(cell.assign(p=cell["msp"]), ["msp", "p", "msp", "p", "msp"], {}, "t")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 5 and len({ax.get_position().x0 for ax in panels}) == 4  # a grid of 4 columns
    counts = [ax for ax in fig.axes if not ax.get_title()]
    assert len({ax.get_ylim() for ax in counts}) == 1  # one count scale for every panel
    plots.close(fig)


def make_run_scores(n):
    import tempfile
    from pathlib import Path

    from probebench.report.html import load_scores, pick_cell, score_methods

    with tempfile.TemporaryDirectory() as folder:
        scores = load_scores(make_run(Path(folder) / "run", seeds=(0, 1), n=n))
    cell, _, _ = pick_cell(scores, None, None)
    return cell, score_methods(cell)
