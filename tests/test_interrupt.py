"""Ctrl-C in the middle of `probebench run`, locally and on Ray: exit 130,
no run folder that looks finished, and the same command again completes
from the cache with the bytes of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.ray_plugins import write_registry

SUITE = """
[suite.ctrl-c]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp", { name = "slow-msp", pid_file = "{pid_file}", seconds = 2 }]
metrics = ["accuracy", "auroc"]
corruptions = [{ name = "cure-noise", severities = [3] }]
seeds = [0]
bootstrap = { resamples = 20 }
"""


def start(root: Path, name: str, cache: Path, executor: str) -> subprocess.Popen:
    """`probebench run ctrl-c` in a new process, one torch thread (the bytes do not depend on the executor)."""
    env = {
        **os.environ,
        "PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),  # tests.ray_plugins, in this process and in Ray's workers
    }
    args = [sys.executable, "-m", "probebench", "--allow-module", "tests.ray_plugins", "run", "ctrl-c"]
    args += ["--registry", str(root / "registry.toml"), "--out", str(root / name), "--cache-dir", str(cache)]
    args += ["--device", "cpu", "--executor", executor]
    return subprocess.Popen(
        args,
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job ignores SIGINT
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_registry(tmp_path_factory.mktemp("ctrl-c"), SUITE)


@pytest.fixture(scope="module")
def uninterrupted(root) -> Path:
    process = start(root, "uninterrupted", root / "cache-uninterrupted", "local")
    _out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err
    return root / "uninterrupted"


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_ctrl_c_mid_run_exits_130_and_the_rerun_resumes_with_the_same_bytes(root, uninterrupted, executor):
    pids, cache = root / "pids", root / f"cache-{executor}"
    pids.unlink(missing_ok=True)
    process = start(root, executor, cache, executor)
    deadline = time.monotonic() + 600
    while not (pids.exists() and pids.read_text().strip()):  # trained, and scoring with the slow scorer
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
        time.sleep(0.05)
    while process.poll() is None and time.monotonic() < deadline:  # Ctrl-C, as often as it takes to land
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert not (root / executor).exists()  # no run folder that looks complete ...
    (partial,) = root.glob(f".{executor}.*.partial")  # ... only the partial one, which says why it stopped
    assert json.loads((partial / "run.json").read_text())["status"] == "interrupted"
    classifier = next((cache / "classifier").glob("*.pt"))
    trained = classifier.stat().st_mtime_ns
    rerun = start(root, executor, cache, executor)
    _out, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err
    assert classifier.stat().st_mtime_ns == trained  # resumed from the cache: not trained again
    assert json.loads((root / executor / "run.json").read_text())["status"] == "finished"
    assert (root / executor / "results.csv").read_bytes() == (uninterrupted / "results.csv").read_bytes()
    assert (root / executor / "scores.csv.gz").read_bytes() == (uninterrupted / "scores.csv.gz").read_bytes()
