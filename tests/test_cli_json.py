"""``run --json`` and ``--metric`` as a CI job uses them: one JSON document on
stdout through a real pipe, the summary's metrics chosen by --metric, and the
old ``--show`` still working with a warning on stderr."""

import json
import subprocess
import sys

from probebench.cli import app


def test_run_json_is_the_summary_alone_on_stdout(runner, tiny_registry, tmp_path):
    registry = tiny_registry()
    out = tmp_path / "runs" / "a"
    done = subprocess.run(
        [sys.executable, "-m", "probebench", "run", "tiny", "--registry", str(registry), "--out", str(out)]
        + ["--device", "cpu", "--metric", "auroc", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # progress lines went to stderr
    assert "start " in done.stderr or "done " in done.stderr
    assert {"run", "run_id", "suite", "status", "seeds", "failures", "tables", "metrics"} <= set(document)
    assert (document["suite"], document["status"], document["seeds"], document["failures"]) == (
        "tiny",
        "finished",
        [0],
        [],
    )
    assert document["run_id"] == "a"
    cells = [cell for table in document["tables"] for cell in table["cells"]]
    assert {cell["metric"] for cell in cells} == {"accuracy", "auroc"}  # the classifier's accuracy + --metric
    msp = next(c for c in cells if c.get("method") == "msp")
    # the same number results.csv holds for that cell
    import pandas as pd

    rows = pd.read_csv(out / "results.csv", keep_default_na=False)
    stored = rows[(rows["method"] == "msp") & (rows["metric"] == "auroc") & (rows["corruption"] == "none")]
    assert msp["value"] == stored["value"].iloc[0] and msp["ci_low"] == stored["ci_low"].iloc[0]

    again = runner.invoke(
        app,
        ["run", "tiny", "--registry", str(registry), "--out", str(tmp_path / "runs" / "b"), "--device", "cpu"]
        + ["--show", "fpr95"],
    )
    assert again.exit_code == 0, again.output
    assert "--show is deprecated" in again.stderr and "use --metric" in again.stderr
    assert "fpr95" in again.stdout and "auroc" not in again.stdout


def documented(command: str) -> set[str]:
    """The `keys` docs/cli.md names under ``### command`` and ``### table cell``."""
    import re

    from tests.conftest import REPO

    text = (REPO / "docs" / "cli.md").read_text()
    parts = dict(re.findall(r"^### (.+?)\n(.*?)(?=^##|\Z)", text, flags=re.M | re.S))
    return set(re.findall(r"`([a-z_]+)`", parts[command] + parts["table cell"]))


def test_every_json_key_is_documented(runner, tmp_path, capsys):
    from fake_runs import make_run

    from probebench.cli.run import show_summary

    root = tmp_path / "results"
    make_run(root / "a", n=80)
    make_run(root / "b", n=80, seeds=(1,), started="2026-02-01T00:00:00+00:00")
    documents = {}
    for command in (
        ["ls"],
        ["plugins"],
        ["show", "scorer", "msp"],
        ["leaderboard", "a", "--results-dir", str(root)],
        ["compare", "a", "b", "--results-dir", str(root), "--tolerance", "1"],
    ):
        result = runner.invoke(app, [*command, "--json"])
        assert result.exit_code == 0, result.output
        documents[command[0]] = json.loads(result.stdout)
    show_summary(root / "a", as_json=True)
    documents["run"] = json.loads(capsys.readouterr().out)
    for command, document in documents.items():
        keys = set(document[0] if isinstance(document, list) else document)
        if command in ("leaderboard", "run"):
            first = document["tables"][0]
            keys |= set(first) | (set(first["cells"][0]) - set(first["rows"]) - set(first["cols"]))  # + pivot keys
        if command == "compare":
            keys |= set(document["cells"][0]) | set(document["summary"]) | set(document["cells"][0]["a"])
        assert keys <= documented(command), (command, keys - documented(command))
