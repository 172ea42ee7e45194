"""Leaderboard output a user reads or a script parses: tidy CSV with intervals,
--json, bold ties, footnotes only where they apply, whole names, --no-intervals."""

import json
import subprocess
import sys
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from fake_runs import write_table

from probebench.cli import app
from probebench.report.ties import overlap_tied


def board(runner, root, *args):
    result = runner.invoke(app, ["leaderboard", "--all", "--results-dir", str(root), *args], terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.stdout


def auroc(method: str, value: float, low: float, high: float, **keys) -> dict:
    return {"method": method, "metric": "auroc", "value": value, "ci_low": low, "ci_high": high, **keys}


@pytest.fixture
def three_methods(tmp_path):
    """msp best; entropy's interval overlaps msp's (a tie); energy's does not."""
    root = tmp_path / "results"
    write_table(
        root / "one",
        [
            auroc("msp", 0.90, 0.86, 0.94),
            auroc("entropy", 0.88, 0.83, 0.92),
            auroc("energy", 0.70, 0.65, 0.75),
            {"method": "-", "metric": "accuracy", "value": 0.95},
        ],
    )
    return root


def test_overlap_fallback_ties_every_value_whose_interval_overlaps_the_best():
    rng = np.random.default_rng(0)
    for _ in range(200):
        values = rng.random(6)
        half = rng.random(6) * 0.2
        lows, highs = values - half, values + half
        lows[rng.random(6) < 0.2] = np.nan  # no interval: the point itself
        for higher in (True, False):
            best = int(np.argmax(values) if higher else np.argmin(values))
            expected = []
            for i in range(6):  # an independent, one-pair-at-a-time reading of the rule
                lo_i = values[i] if np.isnan(lows[i]) else lows[i]
                hi_i = highs[i] if not np.isnan(lows[i]) else values[i]
                lo_b = values[best] if np.isnan(lows[best]) else lows[best]
                hi_b = highs[best] if not np.isnan(lows[best]) else values[best]
                expected.append(max(lo_i, lo_b) <= min(hi_i, hi_b))
            highs_in = np.where(np.isnan(lows), np.nan, highs)
            assert overlap_tied(values, lows, highs_in, higher).tolist() == expected


def test_bold_marks_every_value_tied_with_the_best(runner, three_methods):
    out = board(runner, three_methods, "--format", "markdown")
    assert "**0.900 [0.860, 0.940]**" in out and "**0.880 [0.830, 0.920]**" in out
    assert "| energy | 0.700 [0.650, 0.750] |" in out
    cells = json.loads(board(runner, three_methods, "--json"))["tables"][0]["cells"]
    assert {c["method"]: c["best"] for c in cells} == {"msp": True, "entropy": True, "energy": False}


def test_without_scores_the_overlap_fallback_decides_and_the_note_says_so(runner, three_methods):
    """write_table runs have no scores.csv.gz: no significance test is possible."""
    out = board(runner, three_methods, "--format", "markdown")
    assert "bold: the best value and every value whose interval overlaps the best's" in out
    assert "Holm" not in out
    only_best = board(runner, three_methods, "--format", "markdown", "--alpha", "0")
    assert "**0.900 [0.860, 0.940]**" in only_best and "| entropy | 0.880 [0.830, 0.920] |" in only_best
    assert "bold: best value" in only_best


def test_csv_is_tidy_and_keeps_the_intervals(runner, three_methods):
    frame = pd.read_csv(StringIO(board(runner, three_methods, "--format", "csv")))
    assert list(frame.columns) == [
        "table",
        "method",
        "metric",
        "classifier",
        "value",
        "std",
        "seeds",
        "ci_low",
        "ci_high",
        "best",
    ]
    msp = frame[frame["method"] == "msp"].iloc[0]
    assert (msp["value"], msp["ci_low"], msp["ci_high"], msp["seeds"]) == (0.90, 0.86, 0.94, 1)
    assert set(frame["table"]) == {"one", "one: classifier"}  # one table column, not tables side by side
    assert frame[frame["table"] == "one: classifier"]["classifier"].tolist() == ["cnn"]


def test_json_has_stable_keys_and_the_same_numbers_as_csv(runner, three_methods):
    document = json.loads(board(runner, three_methods, "--json"))
    assert set(document) == {"runs", "tables", "metrics"}
    assert document["metrics"]["auroc"] == {"higher_is_better": True, "scale": 1}
    [methods, classifier] = document["tables"]
    assert set(methods) == {"title", "caption", "metric", "rows", "cols", "cells"}
    assert (methods["rows"], methods["cols"]) == (["method"], ["metric"])
    first = methods["cells"][0]
    assert first == {
        "method": "msp",
        "metric": "auroc",
        "value": 0.9,
        "std": None,
        "seeds": 1,
        "ci_low": 0.86,
        "ci_high": 0.94,
        "best": True,
    }
    assert classifier["cells"][0]["classifier"] == "cnn" and classifier["cells"][0]["value"] == 0.95
    assert document["runs"][0]["run"] == "one"


def test_brackets_footnote_only_under_tables_with_brackets(runner, three_methods):
    out = board(runner, three_methods, "--format", "markdown")
    methods, classifier = out.split("**one: classifier**")
    assert "brackets: 95% percentile-bootstrap intervals" in methods  # intervals shown
    assert "brackets" not in classifier  # accuracy has no interval in this run: no footnote about brackets


def test_no_intervals_shows_values_only(runner, three_methods):
    out = board(runner, three_methods, "--format", "latex", "--no-intervals")
    assert r"\textbf{0.900}" in out and "[0.860" not in out and r"\scriptsize" not in out


def test_table_format_never_truncates_a_name(runner, tmp_path):
    long = "a-very-long-third-party-scorer-name-that-is-wider-than-any-terminal-column-x" * 2
    root = tmp_path / "results"
    write_table(root / "one", [auroc(long, 0.9, 0.8, 0.95), auroc("msp", 0.8, 0.7, 0.85)])
    out = board(runner, root)
    assert long in out and "…" not in out


def test_leaderboard_json_is_the_only_thing_on_stdout(three_methods):
    """Through a real pipe: stdout parses whole; the skipped-run note goes to stderr."""
    broken = write_table(three_methods / "broken", [auroc("msp", 0.5, 0.4, 0.6)], started="2026-02-01T00:00:00")
    head = json.loads((broken / "run.json").read_text())
    (broken / "run.json").write_text(json.dumps({**head, "status": "failed"}))
    done = subprocess.run(
        [sys.executable, "-m", "probebench", "leaderboard", "--all", "--results-dir", str(three_methods), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tables"] and "skipping" in done.stderr
