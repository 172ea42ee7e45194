"""Leaderboards of hand-made results tables: pivots, seeds, filters, configs, formats, publish."""

from html.parser import HTMLParser
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_runs import make_run, suite_dict, write_table

from probebench import results
from probebench.cli import app
from probebench.errors import UserError


def cells(seed: int, shift: float = 0.0):
    """Clean and blur (severities 1-3) rows of two methods plus accuracy, for one seed.
    AUROC: msp 0.9 (clean), 0.9/0.8/0.7 (blur 1/2/3); entropy 0.1 lower; + seed/100 + shift."""
    rows = [{"seed": seed, "method": "-", "metric": "accuracy", "value": 0.95 + seed / 100}]
    for method, base in (("msp", 0.9), ("entropy", 0.8)):
        rows.append(
            {
                "seed": seed,
                "method": method,
                "metric": "auroc",
                "value": base + seed / 100 + shift,
                "ci_low": base - 0.05,
                "ci_high": base + 0.05,
            }
        )
        rows.append({"seed": seed, "method": method, "metric": "fpr95", "value": 1 - base + seed / 100})
        for severity in (1, 2, 3):
            rows.append(
                {
                    "seed": seed,
                    "method": method,
                    "metric": "auroc",
                    "corruption": "blur",
                    "severity": severity,
                    "value": base - 0.1 * (severity - 1) + seed / 100 + shift,
                }
            )
    return rows


@pytest.fixture
def two_seed_runs(tmp_path):
    root = tmp_path / "results"
    write_table(root / "run-seed0", cells(0), started="2026-01-01T00:00:00")
    write_table(root / "run-seed1", cells(1), started="2026-01-02T00:00:00")
    return root


def invoke(runner, args):
    result = runner.invoke(app, args)
    return result.exit_code, result.output


def csv_of(output: str):
    return pd.read_csv(StringIO(output))


def wide(output: str, col: str = "metric", index=("table", "method")):
    """The tidy CSV pivoted back to the table a user saw: ``index`` x ``col`` values."""
    frame = csv_of(output).dropna(subset=["method"])
    return frame.pivot_table(index=list(index), columns=col, values="value", sort=False)


def test_methods_by_metric_is_mean_and_std_over_seeds(runner, two_seed_runs):
    code, out = invoke(runner, ["leaderboard", "--all", "--results-dir", str(two_seed_runs), "--format", "csv"])
    assert code == 0, out
    tidy = csv_of(out)
    assert list(tidy.columns[-6:]) == ["value", "std", "seeds", "ci_low", "ci_high", "best"]
    row = tidy[(tidy["method"] == "msp") & (tidy["metric"] == "auroc")].iloc[0]
    assert row["std"] == pytest.approx(np.std([0.90, 0.91], ddof=1)) and row["seeds"] == 2  # the spread is kept
    table = wide(out)
    assert table.loc[("2 runs", "msp"), "auroc"] == pytest.approx(0.905)  # clean only: (0.90 + 0.91) / 2
    assert table.loc[("2 runs", "entropy"), "fpr95"] == pytest.approx(0.205)
    code, out = invoke(runner, ["leaderboard", "--all", "--results-dir", str(two_seed_runs), "--format", "markdown"])
    std = np.std([0.90, 0.91], ddof=1)
    assert f"**0.905 ± {std:.3f}**" in out  # msp has the best AUROC: bold
    assert f"**{0.105:.3f} ± {std:.3f}**" in out  # and the lowest FPR95 (lower is better)
    assert "auroc ↑" in out and "fpr95 ↓" in out and "clean test data only" in out
    assert "classifier" in out and "0.955 ±" in out  # the accuracy section


def test_methods_by_corruption_means_severities_within_each_seed(two_seed_runs):
    from probebench.report import leaderboard as board

    table, heads = results.combine(results.find_runs(two_seed_runs))
    [section] = board.sections(table, board.View(["method"], ["corruption"], ["auroc"]), heads)
    # blur: mean over severities 0.9, 0.8, 0.7 (+ seed/100), then over seeds 0 and 1
    assert section.numbers.loc["msp", "blur"] == pytest.approx(0.805)
    assert section.numbers.loc["entropy", "none"] == pytest.approx(0.805)
    # the std over seeds is of the per-seed means, not of all nine cells
    assert section.labels.loc["msp", "blur"] == f"0.805 ± {np.std([0.80, 0.81], ddof=1):.3f}"
    assert "mean over severity (up to 3 values)" in section.caption
    assert list(section.numbers.columns) == ["none", "blur"]


def test_methods_by_severity(runner, two_seed_runs):
    code, out = invoke(
        runner,
        [
            "leaderboard",
            "--all",
            "--results-dir",
            str(two_seed_runs),
            "--cols",
            "severity",
            "--metric",
            "auroc",
            "--format",
            "csv",
        ],
    )
    assert code == 0, out
    table = wide(out, "severity", ["method"])
    assert list(table.columns) == [0, 1, 2, 3]
    assert table.loc["msp", 3] == pytest.approx(0.705)
    assert table.loc["entropy", 0] == pytest.approx(0.805)


def test_where_filters_and_one_seed_shows_intervals(runner, two_seed_runs):
    code, out = invoke(
        runner,
        [
            "leaderboard",
            "--all",
            "--results-dir",
            str(two_seed_runs),
            "--where",
            "seed=0",
            "--metric",
            "auroc",
            "--format",
            "markdown",
        ],
    )
    assert code == 0, out
    assert "0.900 [0.850, 0.950]" in out and "±" not in out.split("**runs**")[0]
    code, out = invoke(
        runner,
        [
            "leaderboard",
            "--all",
            "--results-dir",
            str(two_seed_runs),
            "--where",
            "corruption=blur",
            "--where",
            "severity=1,2",
            "--metric",
            "auroc",
            "--format",
            "csv",
        ],
    )
    assert wide(out, index=["method"]).loc["msp", "auroc"] == pytest.approx(0.855)  # (0.9+0.8)/2 over seeds


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cols", "corruption"], "cannot average different metrics"),
        (["--where", "corruption=fog"], "matches nothing"),
        (["--where", "colour=red"], "unknown key 'colour'"),
        (["--where", "corruption"], "--where takes key=value"),
        (["--metric", "aurocc"], "(did you mean 'auroc'"),
        (["--rows", "methd"], "cannot pivot on 'methd'"),
        (["--rows", "metric"], "in both --rows and --cols"),
        (["--format", "xls"], "unknown format 'xls'"),
    ],
)
def test_bad_leaderboard_options_are_one_line_errors(runner, two_seed_runs, args, message):
    code, out = invoke(runner, ["leaderboard", "--all", "--results-dir", str(two_seed_runs)] + args)
    assert code == 2 and message in out and "Traceback" not in out, out


def test_runs_of_different_configs_are_never_averaged(runner, tmp_path):
    root = tmp_path / "results"
    write_table(root / "long", cells(0), suite=suite_dict(epochs=8))
    write_table(root / "short", cells(1, shift=-0.3), suite=suite_dict(epochs=1), started="2026-01-02T00:00:00")
    code, out = invoke(
        runner, ["leaderboard", "--all", "--results-dir", str(root), "--metric", "auroc", "--format", "csv"]
    )
    assert code == 0, out
    table = csv_of(out)
    assert "config" in table.columns and table["config"].nunique() == 2
    assert sorted(table.dropna(subset=["method"])["value"].round(3)) == [0.51, 0.61, 0.8, 0.9]
    code, out = invoke(
        runner, ["leaderboard", "--all", "--results-dir", str(root), "--metric", "auroc", "--format", "markdown"]
    )
    assert "classifier.options.epochs: 8 | 1" in out
    combined, _ = results.combine(results.find_runs(root))
    with pytest.raises(UserError, match="different suite configs"):
        results.aggregate(combined[combined["metric"] == "auroc"], ["method"])


def test_a_seed_run_twice_counts_once(tmp_path):
    root = tmp_path / "results"
    write_table(root / "first", cells(0, shift=-0.5))
    write_table(root / "again", cells(0), started="2026-01-05T00:00:00")
    table, _ = results.combine(results.find_runs(root))
    numbers, _labels = results.pivot(
        table[(table["metric"] == "auroc") & (table["corruption"] == "none")], ["method"], ["metric"]
    )
    assert numbers.loc["msp", "auroc"] == pytest.approx(0.9)  # the newer run's value, not a mean with 0.4


class StrictParser(HTMLParser):
    VOID = {"img", "meta", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.ids, self.images = [], [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def test_html_and_latex_formats(runner, two_seed_runs):
    code, out = invoke(runner, ["leaderboard", "--all", "--results-dir", str(two_seed_runs), "--format", "html"])
    assert code == 0, out
    parser = StrictParser()
    parser.feed(out)
    assert not parser.stack and parser.tags.count("table") == 2 and "strong" in parser.tags
    code, out = invoke(
        runner, ["leaderboard", "--all", "--results-dir", str(two_seed_runs), "--format", "latex", "--out", "board.tex"]
    )
    assert code == 0, out
    tex = Path("board.tex").read_text()
    assert r"\toprule" in tex and r"fpr95 $\downarrow$" in tex
    std = np.std([0.90, 0.91], ddof=1)
    # the value in bold, its spread on a second, smaller line of the same cell: columns stay page-narrow
    assert rf"\textbf{{0.905}} \\ \scriptsize $\pm$ {std:.3f}" in tex


def test_table_format_shows_arrows(runner, two_seed_runs):
    code, out = invoke(runner, ["leaderboard", "--all", "--results-dir", str(two_seed_runs)])
    assert code == 0 and "auroc ↑" in out and "fpr95 ↓" in out and "msp" in out


def test_publish_uses_only_runs_of_the_current_suite_config(runner, tiny_registry, tmp_path):
    from probebench.suite import load_config, parse_suite

    registry = tiny_registry()
    current = parse_suite(load_config(registry), "tiny").as_dict()
    root = tmp_path / "results"
    make_run(root / "a", suite={**current, "seeds": [0, 1]}, seeds=(0, 1), n=120)
    make_run(root / "b", suite={**current, "seeds": [2]}, seeds=(2,), n=120, started="2026-01-02T00:00:00")
    old = {**current, "classifier": {**current["classifier"], "options": {"epochs": 99}}}
    make_run(root / "old", suite=old, n=120, separation=-5.0, started="2026-01-03T00:00:00")
    out = tmp_path / "LEADERBOARD.md"
    code, text = invoke(
        runner,
        ["publish", "--suite", "tiny", "--registry", str(registry), "--results-dir", str(root), "--out", str(out)],
    )
    assert code == 0, text
    page = out.read_text()
    assert page.startswith("# probebench leaderboard") and "probebench publish --suite tiny" in page
    assert "## tiny" in page and "mean ± std over seeds 0, 1, 2" in page
    assert "| a |" in page and "| b |" in page and "| old |" not in page
    code, text = invoke(
        runner, ["publish", "--suite", "tiny", "--registry", str(registry), "--results-dir", str(tmp_path / "empty")]
    )
    assert code == 2 and "no run of suite 'tiny'" in text


def test_cells_keep_three_significant_digits_tiny_ones_in_scientific_notation():
    assert (
        results.decimals([0.95, 0.5]) == 3 and results.decimals([1.0, 0.01]) == 3 and results.decimals([63.1, 1.5]) == 1
    )
    assert results.decimals([5.1e-6, 9.7e-6]) == -2 and results.decimals([0.0, 0.0]) == 3
    assert results.decimals([0.0, -6.7e-4]) == 3  # a gain near zero reads 0.000 / -0.001
    assert results.format_cell({"value": 5.1e-6, "ci_low": np.nan, "ci_high": np.nan}, -2) == "5.10e-06"
    assert results.format_cell({"value": 5.1e-6, "std": 1e-6, "seeds": 3}, -2) == "5.10e-06 ± 1.00e-06"
    assert results.format_cell({"value": 0.959, "ci_low": 0.93, "ci_high": 0.98}, 3) == "0.959 [0.930, 0.980]"


def test_scorers_correctors_and_generators_get_tables_of_their_own_columns():
    from probebench.report.leaderboard import _method_groups

    rows = [
        ("msp", "auroc"),
        ("msp", "fpr95"),
        ("entropy", "auroc"),
        ("entropy", "fpr95"),
        ("prober-latent", "correction-rate"),
        ("prober-latent", "break-rate"),
        ("glow", "bits-per-dim"),
    ]
    table = pd.DataFrame(rows, columns=["method", "metric"])
    assert _method_groups(table) == {
        "miss detection": ["msp", "entropy"],
        "correction": ["prober-latent"],
        "generators": ["glow"],
    }
    assert _method_groups(table[table["metric"].isin(["auroc", "fpr95"])]) == {"": ["msp", "entropy"]}
