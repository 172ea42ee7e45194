"""The commands end to end, on a 300-image, 1-epoch suite."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from probebench.cli import app
from probebench.results import COLUMNS


@pytest.fixture
def tiny_run(runner, tiny_registry, tmp_path):
    registry = tiny_registry()
    out = tmp_path / "results" / "tiny-run"
    result = runner.invoke(app, ["run", "tiny", "--registry", str(registry), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out, result


def test_run_writes_tidy_results_header_and_scores(tiny_run):
    out, result = tiny_run
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert list(table.columns) == COLUMNS
    assert set(table["method"]) == {"-", "msp", "entropy"}
    assert set(table["metric"]) == {"accuracy", "auroc", "aupr-miss", "fpr95"}
    assert (table["corruption"] == "none").all() and (table["n"] == 300).all()
    head = json.loads((out / "run.json").read_text())
    for key in ("probebench_version", "git_commit", "torch_version", "machine", "started", "finished", "suite"):
        assert key in head
    assert head["suite"]["name"] == "tiny" and head["failures"] == []
    scores = pd.read_csv(out / "scores.csv.gz")
    assert len(scores) == 300 and {"msp", "entropy", "hit", "label", "prediction"} <= set(scores.columns)
    assert "auroc" in result.output and "msp" in result.output


def test_table_numbers_trace_back_to_saved_scores(tiny_run):
    from probebench.plugins.metrics.failure import AUROC

    out, _ = tiny_run
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    scores = pd.read_csv(out / "scores.csv.gz")
    row = table[(table["method"] == "msp") & (table["metric"] == "auroc")].iloc[0]
    assert row["value"] == pytest.approx(AUROC()(scores["msp"].to_numpy(), scores["hit"].to_numpy() == 1), abs=1e-5)


def test_second_run_reuses_the_cached_classifier(runner, tiny_registry, tmp_path, tiny_run):
    import os
    from pathlib import Path

    cache = Path(os.environ["PROBEBENCH_CACHE"])
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*.pt")}
    out2 = tmp_path / "results" / "again"
    args = ["run", "tiny", "--registry", str(tiny_registry()), "--out", str(out2), "--device", "cpu"]  # as tiny_run
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert stamps and {p: p.stat().st_mtime_ns for p in cache.rglob("*.pt")} == stamps  # nothing rewritten
    first = pd.read_csv(tiny_run[0] / "results.csv")
    assert first.equals(pd.read_csv(out2 / "results.csv"))


@pytest.mark.parametrize("fmt, marker", [("table", "auroc"), ("markdown", "| method |"), ("csv", "method,")])
def test_leaderboard_formats(runner, tiny_run, fmt, marker):
    out, _ = tiny_run
    result = runner.invoke(app, ["leaderboard", "latest", "--results-dir", str(out.parent), "--format", fmt])
    assert result.exit_code == 0, result.output
    assert marker in result.output and "msp" in result.output


def test_ls_and_plugins(runner):
    result = runner.invoke(app, ["ls", "scorers"])
    assert result.exit_code == 0 and "msp" in result.output and "entropy" in result.output
    result = runner.invoke(app, ["ls", "metric", "aupr*"])
    assert "aupr-miss" in result.output and "auroc" not in result.output
    result = runner.invoke(app, ["plugins", "--json"])
    plugins = json.loads(result.output)
    softmax = next(p for p in plugins if p["name"] == "probebench.plugins.scorers.softmax")
    assert softmax["registers"] == {"scorer": ["msp", "entropy"]} and softmax["version"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "mnist-qiuck"], "unknown suite 'mnist-qiuck' (did you mean 'mnist-quick'"),
        (["ls", "scorerz"], "unknown kind 'scorerz'"),
        (["ls", "scorers", "msq"], "no scorer name matches 'msq' (did you mean 'msp'?)"),
        (["run", "--seeds", "a,b"], "--seeds takes comma-separated integers"),
        (["run", "--device", "tpu"], "unknown device 'tpu'"),
        (["leaderboard", "nope"], "no run 'nope'"),
        (["leaderboard", "--format", "xls"], "unknown format 'xls'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runner, args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_help_and_ls_do_not_import_torch_or_ray():
    code = (
        "import sys; from probebench.cli import app; from typer.testing import CliRunner; "
        "r = CliRunner().invoke(app, ['ls']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
        "r = CliRunner().invoke(app, ['run', '--help']); assert r.exit_code == 0; "
        "heavy = [m for m in ('torch', 'pandas', 'timm', 'sklearn', 'ray') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
