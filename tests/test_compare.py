"""``probebench compare``: deltas, interval flags, and the exit codes a CI job relies on."""

import io

import pandas as pd
import pytest
from fake_runs import write_table

from probebench.cli import app

DIRECTIONS = {"accuracy": True, "auroc": True, "fpr95": False, "aurc": False}
SCALES = {"aurc": 1000}


def rows(auroc=0.90, fpr95=0.30, aurc=20.0, width=0.02):
    """One seed's clean rows for msp, with intervals of half-width ``width`` (x1000 for aurc)."""

    def row(metric, value, half):
        return {"method": "msp", "metric": metric, "value": value, "ci_low": value - half, "ci_high": value + half}

    return [
        {"method": "-", "metric": "accuracy", "value": 0.95, "ci_low": 0.94, "ci_high": 0.96},
        row("auroc", auroc, width),
        row("fpr95", fpr95, width),
        row("aurc", aurc, 1000 * width),
    ]


@pytest.fixture
def pair(tmp_path):
    def write(a: dict, b: dict):
        root = tmp_path / "results"
        write_table(root / "base", rows(**a), directions=DIRECTIONS, scales=SCALES)
        write_table(root / "new", rows(**b), directions=DIRECTIONS, scales=SCALES, started="2026-02-01T00:00:00")
        return root

    return write


def compare(runner, root, *extra):
    result = runner.invoke(app, ["compare", "base", "new", "--results-dir", str(root), *extra])
    return result.exit_code, result.output


def test_identical_runs_pass(runner, pair):
    code, out = compare(runner, pair({}, {}))
    assert code == 0, out
    assert "0 regression(s)" in out and "regression " not in out.split("0 regression(s)")[0]


def test_a_worse_auroc_fails_and_a_loose_tolerance_passes(runner, pair):
    root = pair({}, {"auroc": 0.85})
    code, out = compare(runner, root)
    assert code == 1 and "regression" in out and "-0.050 *" in out, out  # intervals 0.88-0.92 vs 0.83-0.87
    code, out = compare(runner, root, "--tolerance", "0.06")
    assert code == 0, out


def test_direction_decides_what_worse_means(runner, pair):
    code, out = compare(runner, pair({}, {"fpr95": 0.20}))  # lower FPR is better
    assert code == 0 and "improved" in out, out
    code, out = compare(runner, pair({}, {"fpr95": 0.40}))
    assert code == 1 and "regression" in out, out


def test_tolerance_follows_the_metric_scale(runner, pair):
    root = pair({}, {"aurc": 25.0})  # +5 x1000: inside 0.01 * 1000
    code, out = compare(runner, root)
    assert code == 0, out
    code, out = compare(runner, root, "--tolerance", "aurc=2", "--allow-overlap")  # the intervals overlap
    assert code == 1 and "aurc ×1000" in out, out


def test_changes_inside_the_noise_are_not_regressions(runner, pair):
    root = pair({"width": 0.05}, {"auroc": 0.87, "width": 0.05})  # worse by 0.03, intervals overlap
    code, out = compare(runner, root)
    assert code == 0 and "0 regression(s)" in out, out
    code, out = compare(runner, root, "--allow-overlap")  # every worsening beyond the tolerance
    assert code == 1, out
    code, out = compare(runner, pair({"width": 0.01}, {"auroc": 0.87, "width": 0.01}))
    assert code == 1, out


def test_csv_output_and_show_regressions(runner, pair):
    root = pair({}, {"auroc": 0.80, "fpr95": 0.10})
    code, out = compare(runner, root, "--format", "csv", "--status", "regressions")
    assert code == 1
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("method,"))
    table = pd.read_csv(io.StringIO("\n".join(lines[start : start + 2])))
    assert table["metric"].tolist() == ["auroc"] and table["delta"].iloc[0] == pytest.approx(-0.1)
    assert bool(table["disjoint"].iloc[0]) and table["status"].iloc[0] == "regression"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tolerance", "lots"], "--tolerance takes a number"),
        (["--tolerance", "-1"], "--tolerance must be >= 0"),
        (["--format", "xml"], "unknown format 'xml'"),
        (["--metric", "nope"], "--metric 'nope' is not in these results"),
    ],
)
def test_bad_arguments_exit_2(runner, pair, extra, message):
    code, out = compare(runner, pair({}, {}), *extra)
    assert code == 2 and message in out, out


def test_runs_without_common_cells(runner, tmp_path):
    root = tmp_path / "results"
    write_table(root / "base", rows(), directions=DIRECTIONS)
    write_table(root / "new", [{**r, "dataset": "other"} for r in rows()], directions=DIRECTIONS)
    result = runner.invoke(app, ["compare", "base", "new", "--results-dir", str(root)])
    assert result.exit_code == 2 and "share no" in result.output


def test_json_is_one_document_with_stable_keys(runner, pair):
    import json

    result = runner.invoke(app, ["compare", "base", "new", "--results-dir", str(pair({}, {"auroc": 0.80})), "--json"])
    assert result.exit_code == 1  # a regression still fails the job
    document = json.loads(result.stdout)
    assert set(document) == {
        "a",
        "b",
        "seeds",
        "notes",
        "summary",
        "require_disjoint",
        "failed_runs",
        "cells",
        "metrics",
    }
    assert document["summary"]["regressions"] == 1 and document["seeds"] == {"a": [0], "b": [0]}
    [auroc] = [c for c in document["cells"] if c["metric"] == "auroc"]
    assert auroc["a"]["value"] == 0.90 and auroc["b"]["ci_high"] == pytest.approx(0.82)
    assert auroc["delta"] == pytest.approx(-0.10) and auroc["status"] == "regression" and auroc["disjoint"]
    assert document["metrics"]["aurc"] == {"higher_is_better": False, "scale": 1000}


def test_seed_noise_is_not_a_regression_and_different_seeds_are_named(runner, tmp_path):
    """Three seeds each: B's mean AUROC is 0.02 lower, inside ± std over seeds."""
    root = tmp_path / "results"

    def seeded(values, seeds):
        return [
            {"seed": s, "method": "msp", "metric": "auroc", "value": v, "ci_low": v - 0.005, "ci_high": v + 0.005}
            for s, v in zip(seeds, values)
        ]

    write_table(root / "base", seeded([0.90, 0.93, 0.87], [0, 1, 2]), directions=DIRECTIONS)
    write_table(root / "new", seeded([0.88, 0.91, 0.85], [3, 4, 5]), directions=DIRECTIONS, started="2026-02-01")
    code, out = compare(runner, root)
    assert code == 0 and "0 regression(s)" in out, out  # each seed's interval is narrow, the seeds' spread is not
    assert "different seeds (A: 0, 1, 2; B: 3, 4, 5)" in out
    code, out = compare(runner, root, "--allow-overlap")
    assert code == 1, out


def test_show_is_a_deprecated_alias_of_status(runner, pair):
    root = pair({}, {"auroc": 0.80, "fpr95": 0.10})
    result = runner.invoke(app, ["compare", "base", "new", "--results-dir", str(root), "--show", "regressions"])
    assert result.exit_code == 1 and "--show is deprecated" in result.stderr and "--status" in result.stderr
    assert "improved" not in result.stdout and "regression" in result.stdout
