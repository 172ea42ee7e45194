"""``--executor ray``: on a Ray cluster started in this test session (two CPUs
on 127.0.0.1), the same bytes, the same failures and exit codes as a local
run, also when a worker dies in the middle of a task."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from probebench.cli import app
from tests.conftest import builtin_modules

WALL_CLOCK = (",images-per-second,", ",train-seconds,")  # measured, not computed: they differ between runs

RAY_SUITE = """
[suite.ray-tiny]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp", "grad-norm", { name = "prober", source = "train", outputs = "none", min_misses = 2 }]
metrics = ["accuracy", "auroc", "aurc"]
validation = 100
generators = [{ name = "realnvp", epochs = 1, levels = 1, blocks = 1, hidden = 8 }]
correctors = [{ name = "prober-latent", max_steps = 5 }]
corruptions = [{ name = "cure-noise", severities = [3] }]
seeds = [0, 1]
bootstrap = { resamples = 20 }

[suite.ray-faults]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp", "raises", { name = "slow-msp", pid_file = "{pid_file}", seconds = 4 }]
metrics = ["accuracy", "auroc"]
seeds = [0]
bootstrap = { resamples = 20 }
"""


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for every test here: 2 CPUs, no dashboard, workers' output kept out of the test's."""
    import ray

    for attempt in range(3):  # on a loaded machine the raylet may give up waiting for its agents (ray#65983)
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A registry with both suites and the test scorers, and (per module) the local reference runs."""
    root = tmp_path_factory.mktemp("ray")
    modules = ", ".join(f'"{m}"' for m in [*builtin_modules(), "tests.ray_plugins"])
    suites = RAY_SUITE.replace("{pid_file}", str(root / "pids"))
    (root / "registry.toml").write_text(f"[plugins]\nbuiltin = [{modules}]\n{suites}")
    return root


def probebench(root: Path, suite: str, name: str, executor: str) -> tuple[int, Path]:
    """``probebench run SUITE --executor EXECUTOR`` into ``root/name`` with its own (cold) cache."""
    from typer.testing import CliRunner

    args = ["--allow-module", "tests.ray_plugins", "run", suite, "--registry", str(root / "registry.toml")]
    args += ["--out", str(root / name), "--cache-dir", str(root / f"cache-{name}"), "--device", "cpu"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
        result = CliRunner().invoke(app, [*args, "--executor", executor])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, root / name


def computed(run: Path) -> str:
    """results.csv without the measured wall-clock rows."""
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not any(metric in line for metric in WALL_CLOCK))


def failures(run: Path) -> list[dict]:
    return json.loads((run / "run.json").read_text())["failures"]


def test_two_seeds_a_corruption_and_a_corrector_on_ray_give_the_bytes_of_a_local_run(ray_cluster, folder):
    local_code, local = probebench(folder, "ray-tiny", "tiny-local", "local")
    ray_code, on_ray = probebench(folder, "ray-tiny", "tiny-ray", "ray")
    assert local_code == ray_code == 0
    assert (on_ray / "scores.csv.gz").read_bytes() == (local / "scores.csv.gz").read_bytes()
    assert computed(on_ray) == computed(local)
    assert {"correction-rate", "bits-per-dim"} <= {line.split(",")[7] for line in computed(on_ray).splitlines()}
    # the correction artifacts (written by the workers into the run folder) are there too
    assert sorted(p.name for p in (on_ray / "corrections").glob("*.pt")) == sorted(
        p.name for p in (local / "corrections").glob("*.pt")
    )


@pytest.fixture(scope="module")
def faults_local(folder) -> tuple[int, Path]:
    return probebench(folder, "ray-faults", "faults-local", "local")


def test_a_raising_scorer_on_ray_fails_its_cells_with_the_record_and_exit_code_of_a_local_run(
    ray_cluster, folder, faults_local
):
    code, on_ray = probebench(folder, "ray-faults", "faults-ray", "ray")
    local_code, local = faults_local
    assert code == local_code == 1
    assert failures(on_ray) == failures(local) and failures(local)[0]["plugin"] == "raises"
    assert computed(on_ray) == computed(local)
    assert (on_ray / "scores.csv.gz").read_bytes() == (local / "scores.csv.gz").read_bytes()


def test_a_worker_killed_during_a_task_is_retried_and_the_run_gives_the_same_bytes(ray_cluster, folder, faults_local):
    pids = folder / "pids"
    pids.unlink(missing_ok=True)
    outcome: list[tuple[int, Path]] = []
    runner = threading.Thread(target=lambda: outcome.append(probebench(folder, "ray-faults", "killed-ray", "ray")))
    runner.start()
    deadline = time.monotonic() + 300
    while not (pids.exists() and pids.read_text().strip()):  # the slow scorer has started on a worker
        assert time.monotonic() < deadline and runner.is_alive(), "the slow scorer never started"
        time.sleep(0.1)
    killed = int(pids.read_text().split()[0])
    assert killed != os.getpid()  # a worker, not this process
    os.kill(killed, signal.SIGKILL)
    runner.join(600)
    (code, on_ray), (local_code, local) = outcome[0], faults_local
    started_in = [int(pid) for pid in pids.read_text().split()]
    assert started_in[0] == killed and len(started_in) >= 2  # the task ran again, after the kill
    assert code == local_code == 1  # the raising scorer still fails, as locally
    assert failures(on_ray) == failures(local)
    assert computed(on_ray) == computed(local)
    assert (on_ray / "scores.csv.gz").read_bytes() == (local / "scores.csv.gz").read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--executor", "dask"], "unknown executor 'dask'; use one of local, ray"),
        (["--address", "auto"], "--address (PROBEBENCH_RAY_ADDRESS) names a Ray cluster; add --executor ray"),
        (["--executor", "ray", "--fresh"], "--fresh cannot be used with --executor ray"),
    ],
)
def test_a_bad_executor_choice_is_one_line_and_exit_2(runner, args, message):
    result = runner.invoke(app, ["run", "mnist-quick", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_the_executor_comes_from_the_environment_too(runner, monkeypatch):
    monkeypatch.setenv("PROBEBENCH_EXECUTOR", "dask")
    result = runner.invoke(app, ["run", "mnist-quick"])
    assert result.exit_code == 2 and "unknown executor 'dask'" in result.output


def test_without_ray_installed_executor_ray_says_how_to_install_it():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['ray'] = None; from probebench.cli import main; "  # None: `import ray` fails
        "sys.argv = ['probebench', 'run', 'mnist-quick', '--executor', 'ray']; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "install it with pip install 'probebench[ray]'" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
