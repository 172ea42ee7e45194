"""Shared fixtures: an isolated cache, a tiny registry, a CLI runner."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache per test session, so the embedded MNIST is parsed once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, session_cache, tmp_path):
    """Every test runs in its own folder with the session cache and no third-party plugins."""
    monkeypatch.setenv("PROBEBENCH_CACHE", str(session_cache))
    monkeypatch.setenv("PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("PROBEBENCH_REGISTRY", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def builtin_modules() -> list[str]:
    from probebench.suite import load_config

    return load_config(REPO / "registry.toml").builtin


TINY_SUITE = """
[suite.tiny]
dataset = {{ name = "mnist-5k", limit = 300 }}
classifier = {{ name = "cnn", epochs = 1, width = 8 }}
scorers = {scorers}
metrics = ["accuracy", "auroc", "aupr-miss", "fpr95"]
seeds = [0]
bootstrap = {{ resamples = 50 }}
"""


@pytest.fixture
def tiny_registry(tmp_path):
    """Write a registry.toml with the built-in plugins and a 1-epoch suite ``tiny``;
    ``extra`` is appended (more suites), ``scorers`` replaces the scorer list."""

    def write(extra: str = "", scorers: str = '["msp", "entropy"]') -> Path:
        modules = ", ".join(f'"{m}"' for m in builtin_modules())
        text = f"[plugins]\nbuiltin = [{modules}]\n" + TINY_SUITE.format(scorers=scorers) + textwrap.dedent(extra)
        path = tmp_path / "registry.toml"
        path.write_text(text)
        return path

    return write
