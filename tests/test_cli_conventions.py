"""CLI conventions a user and a CI job rely on: --version, -h, completion,
flags without a value placeholder, and where results/ is."""

import re
from importlib.metadata import version

import pytest
from fake_runs import make_run

from probebench.cli import app


def test_version_and_short_help(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"probebench {version('probebench')}"
    result = runner.invoke(app, ["report", "-h"])
    assert result.exit_code == 0 and "--vector" in result.output


def test_shell_completion_is_offered(runner):
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert "--install-completion" in result.output and "--show-completion" in result.output


@pytest.mark.parametrize("command", [[], ["report"], ["leaderboard"], ["run"]])
def test_flags_show_no_bool_placeholder(runner, command):
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    lines = [
        line
        for line in result.output.splitlines()
        if re.search(r"--(debug|version|vector|log-risk|all|fresh|help|install-completion|show-completion)\b", line)
    ]
    assert lines and not any("<bool>" in line for line in lines), lines


def test_results_dir_is_the_projects_from_any_folder(runner, tmp_path, monkeypatch):
    project = tmp_path / "project"
    make_run(project / "results" / "run1", n=50)
    (project / "registry.toml").write_text("")
    deep = project / "notes" / "deep"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    result = runner.invoke(app, ["report", "latest", "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").is_file()
    # $PROBEBENCH_RESULTS wins over the project; --results-dir over both
    elsewhere = tmp_path / "elsewhere"
    make_run(elsewhere / "run2", n=50)
    monkeypatch.setenv("PROBEBENCH_RESULTS", str(elsewhere))
    result = runner.invoke(app, ["report", "latest"])
    assert result.exit_code == 0 and (elsewhere / "run2" / "report.html").is_file()
    result = runner.invoke(app, ["report", "latest", "--results-dir", str(project / "results")])
    assert result.exit_code == 0 and (project / "results" / "run1" / "report.html").is_file()


@pytest.mark.parametrize("command", [["ls", "--json"], ["ls", "scorer", "m*", "--json"], ["plugins", "--json"]])
def test_json_is_one_document_on_stdout(command):
    """Through a real pipe, as a CI job reads it: stdout parses as JSON whole, nothing else on it."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "probebench", *command], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert isinstance(document, list) and document
    if command[0] == "ls":
        assert {"kind", "name", "plugin", "distribution", "version", "description"} <= set(document[0])
        if "scorer" in command:
            assert {row["name"] for row in document} >= {"msp"} and {row["kind"] for row in document} == {"scorer"}


def _walk_named(command, path):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk_named(sub, [*path, name])


def test_help_is_not_hard_wrapped_at_80_columns(runner):
    """At 200 columns every help sentence's first 100 characters stand on one line: nothing is broken
    mid-sentence at 80 columns (issue 24: `report` and `publish` help were)."""
    import typer.main

    commands = [(path, command) for path, command in _walk_named(typer.main.get_command(app), []) if path]
    assert len(commands) >= 12
    for path, command in commands:
        result = runner.invoke(app, [*path, "--help"], terminal_width=200, env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        lines = [" ".join(line.strip(" │").split()) for line in result.output.splitlines()]
        for param in [None, *command.params]:
            if param is not None and (getattr(param, "hidden", False) or not getattr(param, "help", None)):
                continue
            text = command.help if param is None else param.help
            first = " ".join(text.split("\n\n")[0].split())[:100]
            assert any(first in line for line in lines), (path, first)
