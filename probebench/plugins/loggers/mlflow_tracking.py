"""``mlflow``: log each finished run to MLflow (the optional extra ``probebench[mlflow]``)."""

from __future__ import annotations

import math
import os
import re
from typing import Any

from probebench.errors import UserError
from probebench.hookspecs import hookimpl

MAX_PARAM = 6000  # MLflow's limit on a parameter value's length
METRIC_NAME = re.compile(r"[^\w\-. /:]")  # MLflow allows letters, digits, _ - . space / :


class MLflow:
    """One MLflow run per probebench run (named after the run folder, in
    experiment ``experiment``), with a nested run per seed. The parent holds
    the params (the resolved suite as dotted keys, seeds, versions, git
    commit, device) and the artifacts (results.csv, run.json, scores.csv.gz,
    report.html, every PNG grid); each seed's run holds that seed's results
    rows as metrics ``<method>/<metric>/<cell>`` with ``.ci_low`` and
    ``.ci_high`` beside them (cell = ``clean`` or ``<corruption>-<severity>``).

    Tracks to ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else MLflow's
    own default, the local store ``./mlflow.db`` (MLflow 3 retired the
    ``./mlruns`` file store: it refuses one unless
    ``MLFLOW_ALLOW_FILE_STORE=true``). Needs ``pip install
    'probebench[mlflow]'``; mlflow is imported only when a run is logged.
    """

    name = "mlflow"
    version = "1"
    option_help = {
        "tracking_uri": "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's ./mlflow.db)",
        "experiment": "MLflow experiment name",
    }

    def __init__(self, tracking_uri: str | None = None, experiment: str = "probebench"):
        self.tracking_uri, self.experiment = tracking_uri, experiment

    def log_run(self, run: Any) -> None:
        try:
            import mlflow
        except ImportError:
            raise UserError("logger 'mlflow' needs mlflow: pip install 'probebench[mlflow]'") from None

        uri = self.tracking_uri or mlflow.get_tracking_uri()  # $MLFLOW_TRACKING_URI, else MLflow's default
        if _file_store(uri) and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
            raise UserError(
                f"logger 'mlflow': MLflow refuses the file store {uri} unless MLFLOW_ALLOW_FILE_STORE=true; "
                "set that, or track to sqlite:///mlflow.db (MLflow's default)"
            )
        client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(self.experiment)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(self.experiment)
        tags = {"probebench.run": run.path.name, "probebench.status": str(run.meta.get("status", ""))}
        parent = client.create_run(experiment_id, run_name=run.path.name, tags=tags).info.run_id
        params = [mlflow.entities.Param(k, v[:MAX_PARAM]) for k, v in sorted(run.params.items())]
        client.log_batch(parent, params=params)
        for path in run.artifacts:
            folder = path.parent.relative_to(run.path).as_posix()
            client.log_artifact(parent, str(path), None if folder == "." else folder)
        for seed in sorted({int(row["seed"]) for row in run.rows}):
            child = client.create_run(
                experiment_id,
                run_name=f"{run.path.name} seed {seed}",
                tags={**tags, "mlflow.parentRunId": parent},
            ).info.run_id
            client.log_batch(child, params=[mlflow.entities.Param("seed", str(seed))])
            metrics = [m for row in run.rows if int(row["seed"]) == seed for m in _metrics(mlflow, row)]
            for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a batch
                client.log_batch(child, metrics=metrics[start : start + 1000])
            client.set_terminated(child)
        client.set_terminated(parent, "FINISHED" if run.meta.get("status") == "finished" else "FAILED")


def _file_store(uri: str) -> bool:
    """Whether MLflow would open ``uri`` as its (retired) file store: a file: URI or a plain path."""
    scheme = uri.split(":", 1)[0] if re.match(r"^[a-z][a-z0-9+.-]+:", uri) else ""
    return scheme in ("", "file")


def metric_key(row: dict[str, Any]) -> str:
    """``<method>/<metric>/<cell>`` of a results row."""
    corruption = str(row["corruption"])
    cell = "clean" if corruption in ("none", "clean") else f"{corruption}-{int(row['severity'])}"
    return METRIC_NAME.sub("_", f"{row['method']}/{row['metric']}/{cell}")


def _metrics(mlflow: Any, row: dict[str, Any]) -> list[Any]:
    key = metric_key(row)
    values = {key: row["value"], f"{key}.ci_low": row.get("ci_low"), f"{key}.ci_high": row.get("ci_high")}
    return [
        mlflow.entities.Metric(name, float(value), 0, 0)
        for name, value in values.items()
        if value is not None and not (isinstance(value, float) and math.isnan(value))
    ]


@hookimpl
def register_loggers():
    return [MLflow]
