"""Helpers for tests that install plugin packages: pip into a throw-away
target folder (no network, no build isolation), fake distributions, and
switching entry-point autoload back on (conftest turns it off)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def copy_project(source: Path, destination: Path) -> Path:
    """A copy to build from, so pip's build/ and *.egg-info never land in the repo."""
    shutil.copytree(
        source, destination, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache")
    )
    return destination


def pip_install(projects: list[Path], target: Path) -> Path:
    """``pip install --target`` local projects into ``target``, offline, with
    the running interpreter's setuptools; the interpreter's own site-packages
    is left alone, so nothing outlives the test."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--quiet",
        "--target",
        str(target),
        *map(str, projects),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PIP_NO_INPUT": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def activate(monkeypatch, site: Path) -> None:
    """Put ``site`` on sys.path (its .dist-info entry points become visible) and
    turn entry-point autoload back on for this test."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD", "0")


def forget_modules(*packages: str) -> None:
    """Drop imported plugin modules so a later test imports them afresh (or not at all)."""
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") for p in packages):
            del sys.modules[name]


def subprocess_env(*paths: Path) -> dict[str, str]:
    """An environment for a child Python that sees ``paths`` and this checkout, autoload on."""
    env = {k: v for k, v in os.environ.items() if k != "PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def fake_distribution(
    site: Path, name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> Path:
    """A minimal installed distribution in ``site``: a .dist-info folder with
    METADATA and entry_points.txt (group ``probebench``) and its modules."""
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[probebench]\n{lines}")
    for module, text in modules.items():
        (site / f"{module}.py").write_text(text)
    return site
