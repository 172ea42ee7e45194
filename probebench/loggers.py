"""Hand a finished run to the loggers a suite names (``log = ["mlflow"]``, or
``probebench run --log mlflow``): each gets a ``FinishedRun`` read back from
the run folder, so a logger sees exactly what the folder holds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from probebench.errors import UserError
from probebench.kinds import FinishedRun

if TYPE_CHECKING:
    from probebench.registry import Registry
    from probebench.suite import ComponentSpec

ARTIFACTS = ("results.csv", "run.json", "scores.csv.gz", "replicates.npz", "report.html")
HEADER_PARAMS = ("probebench_version", "torch_version", "python_version", "git_commit", "device", "status")


def finished_run(path: Path) -> FinishedRun:
    """The run in folder ``path`` as a logger receives it."""
    from probebench import results

    table, meta = results.load_run(path)
    suite = meta.get("suite", {})
    params = results.flatten(suite, "suite", plain_strings=True)
    params["seeds"] = json.dumps(sorted(int(s) for s in table["seed"].unique()))
    params.update({key: str(meta[key]) for key in HEADER_PARAMS if meta.get(key) is not None})
    artifacts = [path / name for name in ARTIFACTS if (path / name).is_file()]
    artifacts += sorted(p for p in path.rglob("*.png") if p.is_file())
    rows = table.to_dict("records")
    return FinishedRun(path, params, rows, meta, artifacts)


def log_run(registry: Registry, specs: Sequence[ComponentSpec], path: Path) -> None:
    """Send the run in ``path`` to every logger of ``specs``; a logger that
    fails is a one-line error (the run folder stays complete)."""
    if not specs:
        return
    from probebench.console import console

    run = finished_run(path)
    for spec in specs:
        logger = registry.create("logger", spec.name, spec.options)
        try:
            logger.log_run(run)
        except UserError:
            raise
        except Exception as exc:
            first = " ".join(str(exc).split())[:300]
            raise UserError(
                f"logger {spec.label!r} failed: {type(exc).__name__}: {first}; the run itself is complete in {path}"
            ) from None
        console.print(f"logged {path.name} to {spec.label}")


def merged(suite_log: Sequence[ComponentSpec], names: Sequence[str]) -> list[ComponentSpec]:
    """The suite's loggers plus those named on the command line (each once)."""
    from probebench.suite import ComponentSpec

    specs = list(suite_log)
    specs += [ComponentSpec(name) for name in names if name not in {s.name for s in specs}]
    return specs
