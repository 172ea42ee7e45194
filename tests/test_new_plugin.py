"""`probebench new-plugin`: the skeleton installs, its one test passes, and
every kind's skeleton keeps its kind's contract."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import numpy as np
import pytest

from probebench.cli import app
from probebench.scaffold import COMPONENTS, Names, write_plugin
from probebench.testing import CHECKS, registry_with
from tests.plugin_tools import activate, forget_modules, pip_install, subprocess_env


def test_scorer_skeleton_installs_and_its_test_passes(runner, tmp_path, monkeypatch):
    result = runner.invoke(app, ["new-plugin", "probebench-logit-gap", "--out", str(tmp_path / "src")])
    assert result.exit_code == 0, result.output
    root = tmp_path / "src" / "probebench-logit-gap"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "probebench_logit_gap/__init__.py",
        "pyproject.toml",
        "tests/test_probebench_logit_gap.py",
    ]
    assert (
        '[project.entry-points.probebench]\nlogit-gap = "probebench_logit_gap"' in (root / "pyproject.toml").read_text()
    )

    site = pip_install([root], tmp_path / "site")
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=subprocess_env(site),
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "1 passed" in test.stdout

    activate(monkeypatch, site)
    try:
        plugins = json.loads(runner.invoke(app, ["plugins", "--json", "--no-builtin"]).output)
        assert plugins == [
            {
                "name": "logit-gap",
                "module": "probebench_logit_gap",
                "distribution": "probebench-logit-gap",
                "version": "0.1.0",
                "builtin": False,
                "hooks": ["register_scorers"],
                "registers": {"scorer": ["logit-gap"]},
            }
        ]
        shown = runner.invoke(app, ["show", "scorer", "logit-gap"]).output
        assert "temperature" in shown and "float" in shown
    finally:
        forget_modules("probebench_logit_gap")


def test_the_skeleton_test_fails_when_the_package_is_not_installed(tmp_path):
    root = write_plugin("probebench-uninstalled", "scorer", tmp_path)
    namespace: dict = {}
    sys.path.insert(0, str(root))
    try:
        exec((root / "tests" / "test_probebench_uninstalled.py").read_text(), namespace)
        with pytest.raises(Exception, match="unknown scorer 'uninstalled'"):
            namespace["test_probebench_uninstalled_is_installed_and_keeps_the_scorer_contract"]()
    finally:
        sys.path.remove(str(root))
        forget_modules("probebench_uninstalled")


@pytest.mark.parametrize("kind", sorted(COMPONENTS))
def test_every_kind_skeleton_registers_and_keeps_its_contract(tmp_path, kind):
    root = write_plugin(f"probebench-my-{kind}", kind, tmp_path)
    names = Names.from_distribution(f"probebench-my-{kind}", kind)
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(names.module)
        registry = registry_with(module)
        component = registry.create(kind, names.component)
        if kind == "dataset":
            rng = np.random.default_rng(0)
            for split in ("train", "test"):
                np.savez(
                    tmp_path / f"{split}.npz",
                    images=rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
                    labels=np.arange(12) % 10,
                )
            CHECKS[kind](component, root=str(tmp_path))
        else:
            CHECKS[kind](component)
        compile((root / "tests" / f"test_{names.module}.py").read_text(), "test", "exec")
    finally:
        sys.path.remove(str(root))
        forget_modules(names.module)


@pytest.mark.parametrize(
    "args, message",
    [
        (["new-plugin", "Probebench_Bad"], "plugin name 'Probebench_Bad' must be lower-case kebab-case"),
        (["new-plugin", "probebench-x", "--kind", "scorr"], "unknown kind 'scorr' (did you mean 'scorer'"),
        (["new-plugin", "probebench-msp"], "scorer 'msp' already exists (from probebench); choose another name"),
    ],
)
def test_new_plugin_bad_input_is_one_line_and_exit_2(runner, args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1


def test_new_plugin_never_overwrites(runner, tmp_path):
    (tmp_path / "probebench-mine").mkdir()
    (tmp_path / "probebench-mine" / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["new-plugin", "probebench-mine", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "already exists and is not empty" in result.output
    assert (tmp_path / "probebench-mine" / "keep.txt").read_text() == "mine"
