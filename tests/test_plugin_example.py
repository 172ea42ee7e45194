"""examples/probebench-example-plugin, pip-installed as a third party would:
`plugins` lists it with its version, `ls` and `show` its components, a suite
naming its scorer runs, and the leaderboard shows it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pandas as pd
import pytest

from probebench.cli import app
from tests.conftest import REPO
from tests.plugin_tools import activate, copy_project, forget_modules, pip_install, subprocess_env

EXAMPLE = REPO / "examples" / "probebench-example-plugin"
PACKAGE = "probebench_example_plugin"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("example-plugin")
    return pip_install([copy_project(EXAMPLE, root / "src")], root / "site")


@pytest.fixture
def example(monkeypatch, example_site):
    activate(monkeypatch, example_site)
    forget_modules(PACKAGE)
    yield example_site
    forget_modules(PACKAGE)


def test_plugins_lists_it_with_its_version(runner, example):
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    plugin = next(p for p in json.loads(result.output) if p["name"] == "example")
    assert plugin == {
        "name": "example",
        "module": PACKAGE,
        "distribution": "probebench-example-plugin",
        "version": "0.1.0",
        "builtin": False,
        "hooks": ["register_scorers", "register_correctors"],
        "registers": {"scorer": ["knn-distance"], "corrector": ["runner-up-step"]},
    }
    table = runner.invoke(app, ["plugins", "--no-builtin"]).output
    assert "probebench-example-plugin" in table and "0.1.0" in table and "probebench.plugins.scorers" not in table


def test_ls_and_show_its_components(runner, example):
    result = runner.invoke(app, ["ls"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if line.startswith(("scorer", "corrector"))}
    assert "probebench-example-plugin" in rows["knn-distance"] and "probebench-example-plugin" in rows["runner-up-step"]
    shown = runner.invoke(app, ["show", "scorer", "knn-distance", "--json"])
    info = json.loads(shown.output)
    assert info["distribution"] == "probebench-example-plugin" and "Nearest Neighbors" in info["reference"]
    assert [o["name"] for o in info["options"]] == ["k", "layer", "max_train"]


def test_a_suite_naming_its_scorer_runs_and_the_leaderboard_shows_it(runner, tiny_registry, tmp_path, example):
    registry = tiny_registry(scorers='["msp", "knn-distance", { name = "knn-distance", k = 1, label = "knn-1" }]')
    out = tmp_path / "results" / "with-example"
    result = runner.invoke(app, ["run", "tiny", "--registry", str(registry), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert {"knn-distance", "knn-1"} <= set(table["method"])
    auroc = table[(table["method"] == "knn-distance") & (table["metric"] == "auroc")]["value"].iloc[0]
    assert 0 <= auroc <= 1
    board = runner.invoke(app, ["leaderboard", "latest", "--results-dir", str(out.parent), "--format", "markdown"])
    assert board.exit_code == 0, board.output
    assert "| knn-distance |" in board.output and "| knn-1 |" in board.output and "| msp |" in board.output


@pytest.mark.parametrize(
    "args, env",
    [
        (["--disable-plugin", "example"], {}),
        (["--disable-plugin", "probebench-example-plugin"], {}),
        ([], {"PROBEBENCH_DISABLE_PLUGINS": "example"}),
        ([], {"PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}),
    ],
)
def test_it_can_be_switched_off(runner, tiny_registry, monkeypatch, example, args, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, [*args, "ls"])
    assert result.exit_code == 0, result.output
    assert "knn-distance" not in result.output and "msp" in result.output
    registry = tiny_registry(scorers='["knn-distance"]')
    result = runner.invoke(app, [*args, "run", "tiny", "--registry", str(registry)])
    assert result.exit_code == 2 and "unknown scorer 'knn-distance'" in result.output


def test_a_misspelt_disable_plugin_warns_with_the_closest_name(runner, example):
    result = runner.invoke(app, ["--disable-plugin", "exampel", "ls", "correctors"])
    assert result.exit_code == 0
    assert "--disable-plugin exampel: no plugin or distribution of that name (did you mean 'example'" in result.output
    assert "runner-up-step" in result.output


def test_the_example_packages_own_tests_pass(example):
    spec = importlib.util.spec_from_file_location("example_tests", EXAMPLE / "tests" / f"test_{PACKAGE}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [getattr(module, name) for name in dir(module) if name.startswith("test_")]
    assert len(tests) == 3
    for test in tests:
        test()


def test_ls_with_the_plugin_installed_does_not_import_torch(example_site):
    code = (
        "import sys; from probebench.cli import app; from typer.testing import CliRunner; "
        "r = CliRunner().invoke(app, ['ls']); assert r.exit_code == 0, r.output; "
        "assert 'knn-distance' in r.output, r.output; "
        "heavy = [m for m in ('torch', 'pandas') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=subprocess_env(example_site))


def test_a_registry_file_of_ones_own_suites_uses_the_shipped_builtins(runner, tmp_path):
    from probebench.suite import load_config
    from tests.conftest import builtin_modules

    mine = tmp_path / "mine.toml"
    mine.write_text('[suite.mine]\ndataset = "mnist-5k"\nclassifier = "cnn"\nscorers = ["msp"]\nmetrics = ["auroc"]\n')
    assert load_config(mine).builtin == builtin_modules()
    result = runner.invoke(app, ["ls", "scorers", "--registry", str(mine)])
    assert result.exit_code == 0 and "msp" in result.output
    mine.write_text("[plugins]\nbuiltin = []\n" + mine.read_text())
    assert load_config(mine).builtin == []
