"""`probebench show KIND NAME`: docstring, options (name, type, default, help), reference."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from probebench.cli import app
from probebench.hookspecs import hookimpl
from probebench.registry import Registry, options_of
from tests.conftest import builtin_modules


class Documented:
    """Confidence from a [bracketed] formula: rich must not eat it.

    A second paragraph with details.
    """

    name = "documented"
    version = "3"
    reference = "Doe & Roe, A Method [2024], arXiv:0000.00000"
    option_help = {"k": "neighbours to use", "layer": "module name", "weights": "per-class weights"}

    def __init__(
        self,
        k: int = 10,
        layer: str = "auto",
        scale: float | None = None,
        weights: list | None = None,
        flag: bool = False,
    ):
        self.k = k

    def score(self, ctx, batch):
        return batch.probs.max(1).values


@pytest.fixture
def registry_file(tiny_registry, monkeypatch, tmp_path):
    module = types.ModuleType("tests_show_plugin")

    @hookimpl
    def register_scorers():
        return [Documented]

    module.register_scorers = register_scorers
    monkeypatch.setitem(sys.modules, "tests_show_plugin", module)
    monkeypatch.setenv("PROBEBENCH_ALLOW_MODULES", "tests_show_plugin")
    path = tiny_registry()
    path.write_text(path.read_text().replace("builtin = [", 'builtin = ["tests_show_plugin", '))
    return str(path)


def test_show_prints_docstring_options_and_reference(runner, registry_file):
    result = runner.invoke(app, ["show", "scorer", "documented", "--registry", registry_file])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Confidence from a [bracketed] formula" in out and "A second paragraph" in out
    assert "Doe & Roe, A Method [2024]" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["k"][:4] == ["k", "int", "10", "neighbours"]
    assert lines["layer"][:3] == ["layer", "str", '"auto"']
    assert lines["scale"] == ["scale", "float", "|", "None", "null"]
    assert lines["flag"] == ["flag", "bool", "false"]
    assert "version 3" in out and "tests_show_plugin" in out


def test_show_json_for_tooling(runner, registry_file):
    result = runner.invoke(app, ["show", "scorers", "documented", "--json", "--registry", registry_file])
    info = json.loads(result.output)
    assert info["kind"] == "scorer" and info["name"] == "documented" and info["version"] == "3"
    assert info["options"][0] == {
        "name": "k",
        "type": "int",
        "required": False,
        "default": 10,
        "help": "neighbours to use",
    }
    assert [o["name"] for o in info["options"]] == ["k", "layer", "scale", "weights", "flag"]
    assert info["reference"].startswith("Doe & Roe")


def test_show_builtin_classifier_options_match_its_constructor(runner):
    result = runner.invoke(app, ["show", "classifier", "cnn", "--json"])
    info = json.loads(result.output)
    epochs = next(o for o in info["options"] if o["name"] == "epochs")
    assert epochs["type"] == "int" and epochs["default"] == 8 and epochs["help"] == "training epochs"
    assert info["distribution"] == "probebench"
    metric = json.loads(runner.invoke(app, ["show", "metric", "fpr95", "--json"]).output)
    assert metric["higher_is_better"] is False and metric["options"] == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "scorer", "mps"], "unknown scorer 'mps' (did you mean 'msp'"),
        (
            ["show", "scorer"],
            "name the scorer to show: `probebench show scorer NAME`; scorers: devries, doctor, energy, ensemble, entropy",
        ),
        (["show", "scorerz", "msp"], "unknown kind 'scorerz'"),
        (["show", "scorer", "msp", "--out", "grid.png"], "--out draws corruptions only"),
    ],
)
def test_show_bad_input_is_one_line_and_exit_2(runner, args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1


def test_suites_are_validated_against_the_declared_options(runner, registry_file):
    path = registry_file
    text = (
        Path(path)
        .read_text()
        .replace('scorers = ["msp", "entropy"]', 'scorers = ["msp", { name = "documented", kk = 3 }]')
    )
    Path(path).write_text(text)
    result = runner.invoke(app, ["run", "tiny", "--registry", path])
    assert result.exit_code == 2
    assert "suite 'tiny': scorer 'documented' has no option 'kk' (did you mean 'k'" in result.output
    Path(path).write_text(text.replace("kk = 3", 'k = "three"'))
    result = runner.invoke(app, ["run", "tiny", "--registry", path])
    assert result.exit_code == 2 and "option 'k' must be int, got str 'three'" in result.output


def test_every_registered_option_help_names_a_real_option():
    registry = Registry(builtin_modules())
    for kind, entries in registry.entries.items():
        for name, entry in entries.items():
            helps = set(getattr(entry.cls, "option_help", None) or {})
            unknown = helps - set(options_of(entry.cls))
            assert not unknown, f"{kind} {name!r}: option_help names no option {sorted(unknown)}"
