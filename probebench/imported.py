"""Per-sample scores computed elsewhere, read into the tables of a run.

A score file (CSV, Parquet or NPZ) holds one row per test sample: ``label``
and either ``prediction`` plus one column per method's confidence, or the
classifier's ``logits`` (CSV/Parquet columns ``logit_0`` .. ``logit_<C-1>``,
a Parquet list column ``logits``, or an NPZ array [N, C]) from which every
registered scorer that needs nothing but logits is computed. Optional columns
``corruption``, ``severity`` and ``seed`` place rows in test cells (default:
clean test, seed 0); several files are concatenated. A method whose column is
higher = more uncertain (an entropy, a variance) is named with
``higher_is_uncertain`` and negated, since a confidence is higher = more sure.

``import_run`` evaluates them with the evaluate stage's own code
(``probebench.evaluate.evaluate_cell``) and writes a run folder of the same
schema as ``probebench run``'s, with ``source = "imported"`` and the files'
SHA-256 in run.json.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from probebench.errors import UserError, suggest

if TYPE_CHECKING:
    import pandas as pd

    from probebench.registry import Registry
    from probebench.suite import Bootstrap

CELL_COLUMNS = ("corruption", "severity", "seed")
NOT_METHODS = {"label", "prediction", "hit", "index", "logits", *CELL_COLUMNS}
DEFAULT_METRICS = ("accuracy", "auroc", "aupr-miss", "aupr-hit", "fpr95", "aurc", "e-aurc", "auac")
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq", ".npz")


@dataclass
class ScoreTable:
    """The samples of all files: ``frame`` (cell columns, label, prediction,
    one column per method), ``logits`` [N, C] when the files had them, and what
    was read (``files``: name, sha256, rows)."""

    frame: pd.DataFrame
    methods: list[str]
    logits: np.ndarray | None = None
    files: list[dict[str, Any]] = field(default_factory=list)


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_score_file(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """(columns, logits or None) of one file, each column a 1-D array."""
    name = path.name.lower()
    if not path.is_file():
        raise UserError(f"{path}: no such file; pass per-sample score files (CSV, Parquet or NPZ)")
    if not name.endswith(SUFFIXES):
        raise UserError(f"{path}: unknown format; score files end in {', '.join(SUFFIXES)}")
    if name.endswith(".npz"):
        return _read_npz(path)
    return _read_table(path)


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read as .npz ({exc}); save it with numpy.savez") from None
    logits = arrays.pop("logits", None)
    if logits is not None and logits.ndim != 2:
        raise UserError(f"{path}: 'logits' must be a [samples, classes] array, got shape {list(logits.shape)}")
    for key, value in arrays.items():
        if value.ndim != 1:
            raise UserError(f"{path}: array {key!r} must be 1-D (one value per sample), got shape {list(value.shape)}")
    lengths = {key: len(value) for key, value in arrays.items()}
    if logits is not None:
        lengths["logits"] = len(logits)
    if len(set(lengths.values())) > 1:
        raise UserError(f"{path}: arrays differ in length ({lengths}); every array needs one entry per sample")
    return arrays, logits


def _read_table(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    import pandas as pd

    try:
        if path.name.lower().endswith((".parquet", ".pq")):
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path)
    except ImportError as exc:
        raise UserError(f"{path}: reading Parquet needs pyarrow ({exc}); pip install 'probebench[parquet]'") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None
    logit_columns = sorted((c for c in table.columns if str(c).startswith("logit_")), key=_logit_index(path))
    logits = None
    if logit_columns:
        logits = table[logit_columns].to_numpy(dtype=float)
    elif "logits" in table.columns:
        try:
            logits = np.stack([np.asarray(v, dtype=float) for v in table["logits"]])
        except ValueError:
            raise UserError(f"{path}: column 'logits' must hold one list of C numbers per row") from None
    columns = {str(c): table[c].to_numpy() for c in table.columns if c not in logit_columns and c != "logits"}
    return columns, logits


def _logit_index(path: Path) -> Any:
    def index(column: str) -> int:
        try:
            return int(column.removeprefix("logit_"))
        except ValueError:
            raise UserError(f"{path}: column {column!r}: logit columns are named logit_0 .. logit_<C-1>") from None

    return index


def _numeric(path: Path, name: str, values: np.ndarray) -> np.ndarray:
    try:
        numbers = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise UserError(f"{path}: column {name!r} must be numeric") from None
    bad = ~np.isfinite(numbers)
    if bad.any():
        raise UserError(
            f"{path}: column {name!r} has {int(bad.sum())} NaN or infinite value(s) (first at row "
            f"{int(np.argmax(bad))}); every sample needs a finite value: remove or fix those rows"
        )
    return numbers


def _indices(path: Path, name: str, values: np.ndarray, top: int | None, why: str = "") -> np.ndarray:
    """``values`` as integers in 0..top-1 (or >= 0 when ``top`` is None)."""
    numbers = _numeric(path, name, values)
    if not np.all(numbers == np.round(numbers)):
        raise UserError(f"{path}: column {name!r} must hold integers")
    ints = numbers.astype(np.int64)
    bad = (ints < 0) | (ints >= top) if top is not None else ints < 0
    if np.any(bad):
        first = int(np.argmax(bad))
        allowed = f"0..{top - 1}{why}" if top is not None else ">= 0"
        raise UserError(f"{path}: {name} {ints[first]} at row {first} is outside {allowed}")
    return ints


def read_scores(
    paths: Sequence[Path | str], higher_is_uncertain: Sequence[str] = (), num_classes: int | None = None
) -> ScoreTable:
    """Every file's samples, validated: one-line errors name the file, column and row."""
    import pandas as pd

    frames, logits_parts, files = [], [], []
    methods: list[str] | None = None
    for raw in paths:
        path = Path(raw)
        columns, logits = read_score_file(path)
        if "label" not in columns:
            raise UserError(f"{path}: no 'label' column; a score file has label, prediction and one column per method")
        classes = num_classes if logits is None else logits.shape[1]
        why = " (the logits' classes)" if logits is not None else " (--num-classes)"
        if logits is not None:
            logits = _numeric(path, "logits", logits)
        if "prediction" not in columns and logits is None:
            raise UserError(f"{path}: no 'prediction' column and no logits; add the classifier's predicted class")
        label = _indices(path, "label", columns["label"], classes, why)
        prediction = (
            _indices(path, "prediction", columns["prediction"], classes, why)
            if "prediction" in columns
            else logits.argmax(axis=1)  # type: ignore[union-attr]  # checked above: logits exist
        )
        found = [c for c in columns if c not in NOT_METHODS]
        if methods is None:
            methods = found
        elif sorted(found) != sorted(methods):
            raise UserError(
                f"{path}: method columns {found} differ from {paths[0]}'s {methods}; give every file the same"
            )
        frame = pd.DataFrame(
            {
                "corruption": columns.get("corruption", np.full(len(label), "none")).astype(str),
                "severity": _indices(path, "severity", columns.get("severity", np.zeros(len(label))), None),
                "seed": _indices(path, "seed", columns.get("seed", np.zeros(len(label))), None),
                "label": label,
                "prediction": prediction,
            }
        )
        for method in found:
            frame[method] = _numeric(path, method, columns[method])
        frames.append(frame)
        if logits is not None:
            logits_parts.append(logits)
        files.append({"file": path.name, "sha256": file_sha256(path), "rows": len(frame)})
    if not frames:
        raise UserError("no score files given; pass one or more CSV, Parquet or NPZ files")
    if logits_parts and len(logits_parts) != len(frames):
        raise UserError("some score files have logits and some do not; give all or none of them logits")
    if len({p.shape[1] for p in logits_parts}) > 1:
        raise UserError(f"score files disagree on the number of classes: {[p.shape[1] for p in logits_parts]}")
    table = ScoreTable(
        pd.concat(frames, ignore_index=True),
        list(methods or []),
        np.concatenate(logits_parts) if logits_parts else None,
        files,
    )
    for method in higher_is_uncertain:
        if method not in table.methods:
            raise UserError(
                f"--higher-is-uncertain {method!r}: no such method column{suggest(method, table.methods)}; "
                f"the files have {table.methods or 'none'}"
            )
        table.frame[method] = -table.frame[method]
    if not table.methods and table.logits is None:
        raise UserError(f"{paths[0]}: no method columns; add one confidence column per method, or the logits")
    return table


# -- scorers on logits alone ---------------------------------------------------------------
class NeedsModel(Exception):
    """A scorer asked for more than the logits (images, features, the model)."""


class LogitsBatch:
    """A ``Batch`` that holds logits only: a scorer that asks for images or
    features raises ``NeedsModel`` and is left out of an import."""

    def __init__(self, logits: Any) -> None:
        self.logits = logits
        self.probs = logits.softmax(dim=1)
        self.predictions = logits.argmax(dim=1)
        self.cell = None

    @property
    def images(self) -> Any:
        raise NeedsModel("images")

    def features(self, layer: str) -> Any:
        raise NeedsModel(f"features at {layer}")

    def prefetch(self, layers: tuple[str, ...]) -> None:
        if layers:
            raise NeedsModel(f"features at {layers}")

    def __len__(self) -> int:
        return len(self.logits)


def logit_scores(registry: Registry, logits: np.ndarray, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """``{scorer: confidence[N]}`` of the registered scorers computable from
    ``logits`` alone (all of them, or ``names``, which must be)."""
    import torch

    batch = LogitsBatch(torch.as_tensor(logits, dtype=torch.float32))
    chosen = list(names) if names is not None else registry.names("scorer")
    scores: dict[str, np.ndarray] = {}
    for name in chosen:
        scorer = registry.create("scorer", name)
        try:
            if hasattr(scorer, "prepare"):
                raise NeedsModel("trained artifacts (it has a prepare step)")
            with torch.no_grad():
                values = np.asarray(torch.as_tensor(scorer.score(None, batch)).detach().cpu(), dtype=float)
        except Exception as exc:  # a scorer that needs a model fails in its own way on a None ctx
            if names is not None:
                raise UserError(f"scorer {name!r} cannot be computed from logits alone ({exc}); leave it out") from None
            continue
        if values.shape == (len(logits),) and np.all(np.isfinite(values)):
            scores[name] = values
    return scores


# -- the run folder ------------------------------------------------------------------------
def import_run(
    paths: Sequence[Path | str],
    name: str,
    registry: Registry,
    out: Path,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    bootstrap: Bootstrap | None = None,
    higher_is_uncertain: Sequence[str] = (),
    num_classes: int | None = None,
    scorers: Sequence[str] | None = None,
    dataset: str = "imported",
    classifier: str = "imported",
) -> Path:
    """Evaluate score files and write ``out`` as a run folder (results.csv,
    run.json with ``source = "imported"``, scores.csv.gz); returns ``out``."""
    from probebench import results
    from probebench.evaluate import evaluate_cell
    from probebench.suite import Bootstrap, ComponentSpec, Suite

    bootstrap = bootstrap or Bootstrap()
    started = time.time()
    table = read_scores(paths, higher_is_uncertain, num_classes)
    frame = table.frame
    if table.logits is not None:
        computed = logit_scores(registry, table.logits, scorers)
        for method, values in computed.items():
            if method in frame.columns:
                raise UserError(f"column {method!r} clashes with the scorer computed from the logits; rename it")
            frame[method] = values
        table.methods += list(computed)
    for metric in metrics:
        registry.entry("metric", metric)  # an unknown metric fails here, before any work
    metric_objects = {m: registry.create("metric", m) for m in metrics}
    suite = Suite(
        name=name,
        dataset=ComponentSpec(dataset),
        classifier=ComponentSpec(classifier),
        scorers=tuple(ComponentSpec(m) for m in table.methods),
        metrics=tuple(metrics),
        seeds=tuple(sorted(int(s) for s in frame["seed"].unique())),
        bootstrap=bootstrap,
    )
    suite_dict = suite.as_dict()
    suite_dict["imported"] = {"files": table.files, "higher_is_uncertain": sorted(higher_is_uncertain)}
    rows: list[dict[str, Any]] = []
    samples = []
    for (corruption, severity, seed), part in frame.groupby(list(CELL_COLUMNS), sort=False):
        keys = {
            "suite": name,
            "dataset": dataset,
            "corruption": corruption,
            "severity": int(severity),
            "classifier": classifier,
            "seed": int(seed),
        }
        hit = (part["label"] == part["prediction"]).to_numpy()
        confidences = {m: part[m].to_numpy(dtype=float) for m in table.methods}
        rows += [{**keys, **row} for row in evaluate_cell(confidences, hit, metric_objects, bootstrap)]
        sample = part.drop(columns=list(CELL_COLUMNS)).assign(**keys, index=np.arange(len(part)), hit=hit.astype(int))
        samples.append(sample[[*keys, "index", "label", "prediction", "hit", *table.methods]])
    header = results.header(suite_dict, "none", results.now())
    header["source"] = "imported"
    header["files"] = table.files
    header["metrics"] = results.metric_directions(metric_objects)
    header["finished"] = results.now()
    header["seconds"] = round(time.time() - started, 2)
    header["failures"] = []
    import pandas as pd

    results.ensure_writable(out)
    results.write_run(out, rows, header, pd.concat(samples, ignore_index=True))
    return out
