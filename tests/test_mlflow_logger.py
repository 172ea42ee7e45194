"""The ``mlflow`` logger: a tiny run logged to a temporary file store and read
back with ``mlflow.search_runs``; mlflow is imported only when a run is logged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import probebench
from probebench.plugins.loggers.mlflow_tracking import metric_key

SUITE = {
    "dataset": {"name": "mnist-5k", "limit": 300},
    "classifier": {"name": "cnn", "epochs": 1, "width": 8},
    "scorers": ["msp", "entropy"],
    "metrics": ["accuracy", "auroc"],
    "seeds": [0, 1],
    "bootstrap": {"resamples": 50},
    "log": ["mlflow"],
}


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A temporary file store (MLflow 3 opens one only with MLFLOW_ALLOW_FILE_STORE)."""
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def test_a_run_is_one_mlflow_run_with_a_nested_run_per_seed(tmp_path, store):
    import mlflow

    run = probebench.run(SUITE, out=tmp_path / "run")
    runs = mlflow.search_runs(experiment_names=["probebench"], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    (parent,) = parents
    assert parent.info.run_name == "run" and parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.params["seed"] for c in children) == ["0", "1"]
    params = parent.data.params
    assert params["suite.classifier.name"] == "cnn" and json.loads(params["seeds"]) == [0, 1]
    assert params["probebench_version"] == probebench.__version__ and "torch_version" in params
    # every results row of a seed is a metric of that seed's run, with its interval bounds
    for child in children:
        seed = int(child.data.params["seed"])
        rows = run.results[run.results.seed == seed]
        assert len(rows) == 3  # accuracy, and auroc of msp and entropy
        for row in rows.to_dict("records"):
            key = metric_key(row)
            assert child.data.metrics[key] == pytest.approx(row["value"])
            assert child.data.metrics[f"{key}.ci_low"] == pytest.approx(row["ci_low"])
            assert child.data.metrics[f"{key}.ci_high"] == pytest.approx(row["ci_high"])
    client = mlflow.MlflowClient(tracking_uri=store)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"results.csv", "run.json", "scores.csv.gz"} <= artifacts


def test_run_log_mlflow_on_the_command_line(tiny_registry, runner, tmp_path, store):
    import mlflow

    from probebench.cli import app

    result = runner.invoke(app, ["run", "tiny", "--registry", str(tiny_registry()), "--out", "r", "--log", "mlflow"])
    assert result.exit_code == 0, result.output
    runs = mlflow.search_runs(experiment_names=["probebench"], output_format="list")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.params["suite.name"] == "tiny" and parent.data.tags["probebench.run"] == "r"
    assert len(runs) == 2  # the parent and seed 0


def test_a_refused_file_store_is_a_one_line_error_and_the_run_is_kept(tiny_registry, runner, tmp_path, monkeypatch):
    from probebench.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    result = runner.invoke(app, ["run", "tiny", "--registry", str(tiny_registry()), "--out", "r", "--log", "mlflow"])
    assert result.exit_code == 2 and "MLFLOW_ALLOW_FILE_STORE=true" in result.output
    assert (tmp_path / "r" / "results.csv").is_file()


def test_an_unknown_logger_fails_before_anything_runs(tiny_registry, runner):
    from probebench.cli import app

    result = runner.invoke(app, ["run", "tiny", "--registry", str(tiny_registry()), "--log", "mlfow"])
    assert result.exit_code == 2 and "mlflow" in result.output and "Traceback" not in result.output


def test_loading_the_plugins_does_not_import_mlflow():
    code = (
        "import sys; from probebench.registry import Registry; from probebench.suite import load_config; "
        "Registry(load_config(None).builtin); assert 'mlflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
